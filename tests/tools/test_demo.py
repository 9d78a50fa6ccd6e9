"""The demo (scripts/demo.py, run by `make demo`): a tiny run through the same code path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO, SCRIPTS
from fssam.tools import demo as script

SCRIPT = SCRIPTS / "demo.py"


@pytest.mark.slow
def test_tiny_demo_generates_trains_and_tests(tmp_path: Path) -> None:
    root, exp = tmp_path / "toy", tmp_path / "exp"
    args = [
        "--root",
        str(root),
        "--exp-dir",
        str(exp),
        "--epochs",
        "1",
        "--max-iterations",
        "3",
        "--batch-size",
        "2",
        "--episodes",
        "4",
        "--seeds",
        "321",
        "--vis",
        "2",
        "--workers",
        "0",
        "--allow-no-gain",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file()
    run_dir = exp / "toy" / "FSSAM_tiny_dino" / "split0" / "1shot" / "micro"
    demo = json.loads((run_dir / "demo.json").read_text())
    assert set(demo["scores"]) == {"trained", "untrained", "prior"}
    for name in ("results.json", "results_untrained.json", "results_prior.json"):
        results = json.loads((run_dir / name).read_text())
        assert [row["num_episodes"] for row in results["per_seed"]] == [4]
        assert results["release"]["num_episodes"] == 4
    assert json.loads((run_dir / "results_prior.json").read_text())["prior_only"]
    assert (run_dir / "last.pt").is_file() and demo["iterations"] == 3
    assert len(list((run_dir / "vis").glob("*.png"))) == 2
    for row in ("trained FSSAM", "untrained FSSAM", "prior_fg >= 0.5 alone"):
        assert row in result.stdout


def test_exit_status_says_whether_training_beat_both_baselines(monkeypatch, tmp_path: Path) -> None:
    demo = script
    scores = {
        "trained": {"release": {"miou": 30.0, "fbiou": 60.0}, "seeds": {"miou": 31.0, "fbiou": 61.0}},
        "untrained": {"release": {"miou": 10.0, "fbiou": 40.0},
                      "seeds": {"miou": 11.0, "fbiou": 41.0}},
        "prior": {"release": {"miou": 25.0, "fbiou": 50.0}, "seeds": {"miou": 35.0, "fbiou": 50.0}},
    }
    fake = {
        "scores": scores,
        "run_dir": str(tmp_path),
        "iterations": 3,
        "seconds": 1.0,
        "train_seconds": 0.5,
    }
    monkeypatch.setattr(demo, "run_demo", lambda args: dict(fake))
    assert demo.main([]) == 1
    assert demo.main(["--allow-no-gain"]) == 0
    scores["prior"]["seeds"]["miou"] = 25.0
    assert demo.main([]) == 0
    assert json.loads((tmp_path / "demo.json").read_text())["learned"] is True


def test_trained_and_baselines_share_their_episodes() -> None:
    demo = script
    args = demo.parse_args(["--episodes", "50", "--seeds", "1", "2"])
    runs = {run: demo.test_overrides(args, run) for run in ("trained", "untrained", "prior")}
    for run, overrides in runs.items():
        assert "episodes=50" in overrides and "seeds=[1,2]" in overrides, run
        assert all(o in overrides for o in demo.shared_overrides(args)), run
    assert "checkpoint=${run_dir}/last.pt" in runs["trained"]
    assert "prior_only=true" in runs["prior"] and "prior_only=true" not in runs["untrained"]
