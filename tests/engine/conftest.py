"""Fixtures and helpers shared by the engine tests: the synthetic datasets, a run's
metrics records and a 1- or 2-process (torchrun, gloo) launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fssam.tools.toy import make_toy_pascal

DIST_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launch(script: Path, args: list[str], nproc: int, cwd: Path | None = None,
           env: dict[str, str] | None = None, timeout: float = 300
           ) -> subprocess.CompletedProcess:
    """Run ``script args`` with plain python (``nproc`` 1) or under ``torchrun --standalone``
    with ``nproc`` processes, one OpenMP thread each, none of the parent's distributed
    variables, ``env`` added; asserts it exits 0 and returns the finished process."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for name in DIST_VARIABLES:
        run_env.pop(name, None)
    result = subprocess.run([*launcher, str(script), *args], cwd=cwd, env=run_env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def records(run_dir: Path, kind: str) -> list[dict]:
    """The records of type ``kind`` in a run's metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic PASCAL-layout dataset (60 images)."""
    root = tmp_path_factory.mktemp("toy")
    make_toy_pascal(root, num_images=60, seed=0, workers=1)
    return root


@pytest.fixture(scope="module")
def reuse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic PASCAL-layout dataset with 37 evaluation images, at least 8 per novel
    class of fold 0: 5-shot episodes that share images, as the benchmarks' do."""
    root = tmp_path_factory.mktemp("toy_reuse")
    make_toy_pascal(root, num_images=60, seed=0, workers=1, val_fraction=0.9, same_fold_p=0.95)
    return root
