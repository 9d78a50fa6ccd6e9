"""Evaluation sharded over 2 gloo processes (torchrun) equals one process.

With the same batch size the metrics are identical (test_evaluate.py covers batch sizes,
which only move logits by float rounding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fssam.data.toy import make_toy_pascal

WORKER = Path(__file__).with_name("evaluate_dist_worker.py")
EPISODES = 9


def run_worker(
    tmp_path: Path, root: Path, name: str, batch_size: int, nproc: int, cache: Path | None = None,
    extra: tuple[str, ...] = (),
) -> list:
    out = tmp_path / f"{name}.json"
    args = [
        str(WORKER),
        "--root",
        str(root),
        "--lists",
        str(tmp_path / "lists"),
        "--out",
        str(out),
        "--episodes",
        str(EPISODES),
        "--batch-size",
        str(batch_size),
    ]
    if cache is not None:
        args += ["--cache", str(cache)]
    args += list(extra)
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name_ in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name_, None)
    result = subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path) -> None:
    root = tmp_path / "toy"
    make_toy_pascal(root, num_images=60, seed=0, workers=1)
    (tmp_path / "lists").mkdir()
    [single] = run_worker(tmp_path, root, "single", batch_size=3, nproc=1)
    ranks = run_worker(tmp_path, root, "double", batch_size=3, nproc=2, cache=tmp_path / "cache")
    assert single["episodes"] == EPISODES
    assert [r["episodes"] for r in ranks] == [5, 4]
    assert single["metrics"]["num_episodes"] == EPISODES
    for record in ranks:
        assert record["metrics"] == single["metrics"]
    assert len(list((tmp_path / "cache").glob("*/*.pt"))) == EPISODES


@pytest.mark.slow
def test_two_processes_reuse_bit_identically(tmp_path: Path) -> None:
    """Each rank caches what it evaluates: cold and warm passes equal no reuse, 5-shot."""
    root = tmp_path / "toy"
    make_toy_pascal(root, num_images=60, seed=0, workers=1, val_fraction=0.9, same_fold_p=0.95)
    (tmp_path / "lists").mkdir()
    ranks = run_worker(tmp_path, root, "reuse", batch_size=2, nproc=2,
                       extra=("--shot", "5", "--reuse"))
    for record in ranks:
        assert record["metrics"] == ranks[0]["metrics"]
        for name in ("cold", "warm"):
            assert record[name]["identical"], name
            assert record[name]["metrics"] == record["metrics"]
        cold, warm = record["cold"]["stats"], record["warm"]["stats"]
        assert cold["misses"] > 0 and warm["misses"] == cold["misses"]  # warm: all hits
        assert warm["hits"] - cold["hits"] == 2 * record["episodes"] * 6  # 2 encoders, 6 images
