"""The HMNet demo (scripts/demo_hmnet.py, run by `make demo-hmnet`): both stages and the
three tests through train.py's and test.py's code, tiny."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO, SCRIPTS
from fssam.tools import demo_hmnet as script

SCRIPT = SCRIPTS / "demo_hmnet.py"


@pytest.mark.slow
def test_tiny_demo_trains_both_stages_and_tests(tmp_path: Path) -> None:
    root, exp = tmp_path / "toy", tmp_path / "exp"
    args = ["--root", str(root), "--exp-dir", str(exp), "--base-epochs", "1", "--epochs", "1",
            "--max-iterations", "2", "--batch-size", "2", "--size", "64", "--episodes", "4",
            "--seeds", "321", "--vis", "2", "--workers", "0", "--allow-no-gain"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    base_dir = exp / "toy" / "PSPNet_tiny" / "split0" / "vgg"
    run_dir = exp / "toy" / "HMNet_tiny" / "split0" / "1shot" / "vgg"
    demo = json.loads((run_dir / "demo.json").read_text())
    assert demo["base_iterations"] == demo["iterations"] == 2
    assert demo["base_miou"] is not None and (base_dir / "last.pt").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert f"base_learner_checkpoint: {base_dir / 'last.pt'}" in config
    assert set(demo["scores"]) == {"trained", "untrained", "prior"}
    for name in ("results.json", "results_untrained.json", "results_prior.json"):
        results = json.loads((run_dir / name).read_text())
        assert [row["num_episodes"] for row in results["per_seed"]] == [4]
    assert json.loads((run_dir / "results_prior.json").read_text())["prior_only"]
    assert len(list((run_dir / "vis").glob("*.png"))) == 2
    for row in ("trained HMNet", "untrained HMNet", "prior_fg >= 0.5 alone"):
        assert row in result.stdout


def test_exit_status_says_whether_training_beat_both_baselines(monkeypatch, tmp_path: Path):
    demo = script
    scores = {"trained": {"release": {"miou": 30.0, "fbiou": 60.0},
                          "seeds": {"miou": 30.0, "fbiou": 60.0}},
              "untrained": {"release": {"miou": 10.0, "fbiou": 40.0},
                            "seeds": {"miou": 10.0, "fbiou": 40.0}},
              "prior": {"release": {"miou": 20.0, "fbiou": 55.0},
                        "seeds": {"miou": 20.0, "fbiou": 65.0}}}
    fake = {"scores": scores, "base_miou": 12.0, "base_run_dir": str(tmp_path),
            "base_iterations": 3, "run_dir": str(tmp_path), "iterations": 3, "seconds": 1.0,
            "base_seconds": 0.2, "train_seconds": 0.5}
    monkeypatch.setattr(demo, "run_demo", lambda args: dict(fake))
    assert demo.main([]) == 1
    assert demo.main(["--allow-no-gain"]) == 0
    scores["prior"]["seeds"]["fbiou"] = 55.0
    assert demo.main([]) == 0
    assert json.loads((tmp_path / "demo.json").read_text())["learned"] is True


def test_trained_and_baselines_share_their_episodes_and_base_learner(tmp_path: Path) -> None:
    demo = script
    args = demo.parse_args(["--episodes", "50", "--seeds", "1", "2"])
    base = tmp_path / "last.pt"
    runs = {run: demo.test_overrides(args, base, run) for run in ("trained", "untrained", "prior")}
    for run, overrides in runs.items():
        assert "episodes=50" in overrides and "seeds=[1,2]" in overrides, run
        assert all(o in overrides for o in demo.hmnet_overrides(args, base)), run
    assert all(o in demo.meta_overrides(args, base) for o in demo.hmnet_overrides(args, base))
    assert "checkpoint=${run_dir}/last.pt" in runs["trained"]
    assert "prior_only=true" in runs["prior"] and "prior_only=true" not in runs["untrained"]
