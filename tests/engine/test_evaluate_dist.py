"""Evaluation sharded over 2 gloo processes (torchrun) equals one process.

With the same batch size the metrics are identical (test_evaluate.py covers batch sizes,
which only move logits by float rounding).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import launch

WORKER = Path(__file__).with_name("evaluate_dist_worker.py")
EPISODES = 9


def run_worker(
    tmp_path: Path, root: Path, name: str, batch_size: int, nproc: int, cache: Path | None = None,
    extra: tuple[str, ...] = (),
) -> list:
    out = tmp_path / f"{name}.json"
    args = [
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
    launch(WORKER, args, nproc)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path, toy_root: Path) -> None:
    (tmp_path / "lists").mkdir()
    [single] = run_worker(tmp_path, toy_root, "single", batch_size=3, nproc=1)
    ranks = run_worker(tmp_path, toy_root, "double", batch_size=3, nproc=2,
                       cache=tmp_path / "cache")
    assert single["episodes"] == EPISODES
    assert [r["episodes"] for r in ranks] == [5, 4]
    assert single["metrics"]["num_episodes"] == EPISODES
    for record in ranks:
        assert record["metrics"] == single["metrics"]
    assert len(list((tmp_path / "cache").glob("*/*.pt"))) == EPISODES


@pytest.mark.slow
def test_two_processes_reuse_bit_identically(tmp_path: Path, reuse_root: Path) -> None:
    """Each rank caches what it evaluates: cold and warm passes equal no reuse, 5-shot."""
    (tmp_path / "lists").mkdir()
    ranks = run_worker(tmp_path, reuse_root, "reuse", batch_size=2, nproc=2,
                       extra=("--shot", "5", "--reuse"))
    for record in ranks:
        assert record["metrics"] == ranks[0]["metrics"]
        for name in ("cold", "warm"):
            assert record[name]["identical"], name
            assert record[name]["metrics"] == record["metrics"]
        cold, warm = record["cold"]["stats"], record["warm"]["stats"]
        assert cold["misses"] > 0 and warm["misses"] == cold["misses"]  # warm: all hits
        assert warm["hits"] - cold["hits"] == 2 * record["episodes"] * 6  # 2 encoders, 6 images
