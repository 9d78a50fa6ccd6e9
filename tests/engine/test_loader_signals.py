"""Data-loading processes leave the stop signals to their rank: a SIGTERM or SIGUSR1 from
another process (torchrun signals each worker's process group, clusters every process)
neither kills them nor stops the batches, while their rank can still end them, also when
it exits on an error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, subprocess, time
    import torch
    from torch.utils.data import DataLoader, Dataset
    from fssam.engine.preemption import StopSignalsToRank

    class Items(Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, index):
            time.sleep(0.01)
            if index == 30:
                raise ValueError("bad item 30")
            return torch.tensor(index)

    loader = DataLoader(Items(), batch_size=1, num_workers=1,
                        worker_init_fn=StopSignalsToRank(os.getpid()))
    for n, batch in enumerate(loader):
        print(int(batch), flush=True)
        if n == 5:
            me = os.getpid()
            workers = open(f"/proc/{me}/task/{me}/children").read().split()
            for sig in ("-TERM", "-USR1"):  # from another process, as torchrun sends them
                subprocess.run(["kill", sig, *workers], check=True)
""")


def test_loader_processes_survive_stop_signals_and_still_end_with_their_rank():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, check=False)  # an exit that waited on its loader would hang
    assert proc.stdout.split() == [str(i) for i in range(30)], proc.stderr[-2000:]
    assert proc.returncode == 1 and "ValueError: bad item 30" in proc.stderr
