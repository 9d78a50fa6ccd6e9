"""The package works from a non-editable install: the wheel carries the configs, the micro
SAM 2 config and the authors' lists, and the entry points run from another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fssam.tools.toy import make_toy_pascal

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_wheel_runs_from_another_folder(tmp_path: Path) -> None:
    src, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    work = tmp_path / "work"
    work.mkdir()
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    shutil.copytree(REPO / "fssam", src / "fssam",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(src)], tmp_path, env)
    wheel = next(wheels.glob("fssam-*.whl"))
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)], tmp_path, env)
    env["PYTHONPATH"] = str(site)  # ahead of the editable checkout
    where = run([sys.executable, "-c", "import fssam; print(fssam.__file__)"], work, env)
    assert where.stdout.strip() == str(site / "fssam" / "__init__.py")
    toy = tmp_path / "toy"
    make_toy_pascal(toy, num_images=60, workers=1)
    common = ["debug=cpu", f"dataset.root={toy}", f"dataset.cache_dir={tmp_path / 'lists'}",
              f"exp_dir={tmp_path / 'exp'}", "trainer.max_iterations=1", "trainer.num_threads=1",
              "trainer.progress=false", "trainer.num_workers=0"]
    run([sys.executable, "-m", "fssam.cli.train", *common], work, env)
    run([sys.executable, "-m", "fssam.cli.test", *common, "episodes=4", "seeds=[7]"], work, env)
    results = next((tmp_path / "exp").rglob("results.json"))
    assert results.is_file() and (results.parent / "last.pt").is_file()
    episodes = run([sys.executable, "-m", "fssam.tools.episodes", "--out", str(work / "e.csv"),
                    "dataset=toy", f"dataset.root={toy}", f"dataset.cache_dir={tmp_path / 'lists'}",
                    "sam2=micro", "episodes=5"], work, env)
    assert "5 episodes written" in episodes.stdout
    assert not (work / "outputs").exists() and not any(work.glob("*.log"))
