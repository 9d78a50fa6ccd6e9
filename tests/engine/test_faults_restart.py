"""What torchrun's restarts may mend: a lost rank, not an error that a restart meets again
(recorded in torchrun's store, it stops the restarted group at once). And how ranks that
failed or stopped answering are told apart."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from fssam.engine import faults

WORKER = Path(__file__).resolve().parent / "faults_worker.py"


def test_an_error_a_restart_meets_again_is_not_retried(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "--max-restarts=1", str(WORKER)],
                          env=env, capture_output=True, text=True, timeout=240, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # attempt 0: rank 1 meets the bad file, which is recorded; in attempt 1 both ranks stop
    # before any training with the recorded error
    assert out.count("EarlierFailureError: not training again: an earlier attempt of this "
                     "job failed with an error a restart meets again (rank 1: BadFileError: "
                     "image /data/x.jpg is empty (0 bytes))") >= 2, out[-3000:]
    assert "attempt 1 rank 0 started" in out and "attempt 2" not in out


@pytest.fixture
def store():
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                           timeout=datetime.timedelta(seconds=5))
    yield server


def test_ranks_that_failed_are_told_from_ranks_that_went_silent(store, monkeypatch):
    monkeypatch.setattr(faults, "WINDOW_S", 0.3)
    prefix = "fssam/attempt0/"
    store.set(f"{prefix}failed/1", "WriteError: cannot write last.pt: No space left on device")
    store.add(f"{prefix}beat/2", 5)  # rank 2 beat before, and no more
    found = faults.describe_peers(store, prefix, world_size=4, rank=0)
    assert found[0] == "rank 1 failed: WriteError: cannot write last.pt: No space left on device"
    assert found[1].startswith("rank 2 stopped answering") and found[2].startswith("rank 3 ")
    assert len(found) == 3


def test_fatal_errors_are_the_ones_a_restart_meets_again():
    from fssam.data.bad_files import BadFileError
    from fssam.engine.resume_check import ResumeMismatchError
    from fssam.engine.trainer import NonFiniteLossError
    from fssam.utils.io import WriteError
    for err in (BadFileError("x"), WriteError(28, "x"), NonFiniteLossError("x"),
                ResumeMismatchError("x")):
        assert faults.is_fatal(err)
    assert not faults.is_fatal(RuntimeError("Connection closed by peer"))
    assert not faults.is_fatal(faults.PeerLostError("rank 1 stopped answering"))
