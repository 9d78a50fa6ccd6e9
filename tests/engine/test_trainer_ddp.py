"""A 2-process CPU (gloo) training run launched by torchrun, checked against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fssam.engine.config import compose_config
from fssam.engine.training import train
from fssam.tools.toy import make_toy_pascal
from fssam.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "tests" / "fixtures" / "parity"
RUN = "toy/FSSAM_tiny_dino/split0/1shot/micro"


def overrides(tmp: Path, exp_dir: Path, batch_size: int) -> list[str]:
    """Micro SAM 2 without dropout (so 2 x 1 and 1 x 2 episodes per step must agree)."""
    config = tmp / "micro_no_dropout.yaml"
    config.write_text((PARITY / "sam2_micro_v1.yaml").read_text().replace("dropout: 0.1",
                                                                           "dropout: 0.0"))
    return ["debug=cpu", f"dataset.root={tmp / 'toy'}", f"dataset.cache_dir={tmp / 'lists'}",
            f"exp_dir={exp_dir}", f"sam2.config={config}",
            f"sam2.checkpoint={PARITY / 'micro_weights.pt'}", "sam2.image_size=64",
            f"trainer.batch_size={batch_size}", "trainer.max_iterations=2",
            "model.optim.power=1e-9",  # constant lr: the epoch lengths differ (17 vs 16)
            "trainer.val_per_epoch=1", "trainer.val_episodes=3", "trainer.num_threads=1",
            "trainer.progress=false"]


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(tmp_path):
    make_toy_pascal(tmp_path / "toy", num_images=80, size=(128, 160), workers=1)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *overrides(tmp_path, tmp_path / "ddp", 1)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing outside the run folder

    run_dir = tmp_path / "ddp" / RUN
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["type"], r["iteration"]) for r in lines] == [("train", 1), ("train", 2), ("val", 2)]
    ddp = load_checkpoint(run_dir / "last.pt")
    assert ddp["iteration"] == 2 and ddp["iterations_per_epoch"] == 17 and len(ddp["rng"]) == 2
    assert not torch.equal(ddp["rng"][0]["torch"], ddp["rng"][1]["torch"])  # per-rank seeds

    train(compose_config("train", overrides(tmp_path, tmp_path / "single", 2)))
    single = load_checkpoint(tmp_path / "single" / RUN / "last.pt")
    initial = torch.load(PARITY / "micro_weights.pt", weights_only=True)["model"]
    moved = 0
    for key, value in single["model"].items():
        # Adam moves each weight by about lr per step: equal updates within float noise.
        assert torch.allclose(ddp["model"][key], value, atol=2e-5), key
        moved += int(not torch.allclose(value, initial[key.removeprefix("sam2.")], atol=1e-4))
    assert moved > len(single["model"]) // 2
