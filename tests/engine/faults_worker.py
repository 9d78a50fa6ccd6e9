"""Worker for test_faults_restart.py, run under torchrun with restarts: in its first
attempt rank 1 meets a bad file while rank 0 waits in a collective (torchrun then stops
rank 0); later attempts find the recorded error at once."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from fssam.data.bad_files import BadFileError
from fssam.engine.faults import guard
from fssam.utils.dist import cleanup, init_distributed


def main() -> None:
    info = init_distributed("cpu", timeout_s=60)
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    print(f"attempt {attempt} rank {info.rank} started", flush=True)
    try:
        with guard(info):
            if info.rank == 1:
                raise BadFileError("image /data/x.jpg is empty (0 bytes)")
            dist.all_reduce(torch.ones(1))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
