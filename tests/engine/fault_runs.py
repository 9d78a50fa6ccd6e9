"""Helpers of the fault tests: 2-process CPU (gloo) training runs started through train.sh
and the real torchrun, the processes of a run, and the comparison of two runs' results.

train.sh composes the paper's recipe; a torchrun placed first on PATH keeps every flag
train.sh gives torchrun and replaces train.sh's Hydra arguments by the test's (the micro
SAM 2 on the synthetic dataset), then becomes the real torchrun (same process).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from fssam.engine.checkpoint import load_checkpoint
from fssam.tools.toy import make_toy_pascal

REPO = Path(__file__).resolve().parents[2]
PARITY = REPO / "tests" / "fixtures" / "parity"
RUN = "toy/FSSAM_tiny_dino/split0/1shot/micro"
ITERATIONS = 16  # 2 epochs of 8 steps: 33 items, 2 processes x 2 episodes
FAKE_TORCHRUN = """#!{python}
import json, os, sys
script = next(i for i, a in enumerate(sys.argv) if a.endswith("train.py"))
os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *sys.argv[1:script],
                          {train!r}, *json.loads(os.environ["TEST_OVERRIDES"])])
"""


def session_dir(tmp_path_factory) -> Path:
    """A folder of this pytest session that every pytest-xdist worker sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_toy(tmp_path_factory) -> Path:
    """The synthetic dataset, made once for every pytest-xdist worker."""
    root = session_dir(tmp_path_factory) / "fault_toy"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").is_file():
            make_toy_pascal(root, num_images=80, size=(128, 160), workers=1)
            (root / "done").write_text("")
    return root


def overrides(toy: Path, exp_dir: Path, *extra: str) -> list[str]:
    """16 iterations, validation at the end of each epoch, one loader worker per rank."""
    return ["debug=cpu", f"dataset.root={toy}", f"dataset.cache_dir={exp_dir / 'lists'}",
            f"exp_dir={exp_dir}", f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
            f"sam2.checkpoint={PARITY / 'micro_weights.pt'}", "sam2.image_size=64",
            "trainer.batch_size=2", "trainer.epochs=2", "trainer.max_iterations=null",
            "trainer.val_per_epoch=1", "trainer.val_episodes=2", "trainer.num_threads=1",
            "trainer.progress=false", "trainer.log_every=1", "trainer.num_workers=1", *extra]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(exp_dir: Path, args: list[str], env: dict[str, str] | None = None,
          via: str = "train.sh") -> subprocess.Popen:
    """``sh train.sh 2 <port> pascal 0 1 FSSAM small`` training with ``args`` instead
    (``via="torchrun"``: the real torchrun on train.py directly); output in exp_dir/out.txt."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = exp_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "torchrun"
    fake.write_text(FAKE_TORCHRUN.format(python=sys.executable, train=str(REPO / "train.py")))
    fake.chmod(0o755)
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "TEST_OVERRIDES": json.dumps(args),
               "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NNODES",
                 "NODE_RANK", "MAX_RESTARTS", "STOP_TIMEOUT"):
        run_env.pop(name, None)
    run_env.update(env or {})
    if via == "train.sh":
        cmd = ["sh", str(REPO / "train.sh"), "2", str(free_port()), "pascal", "0", "1",
               "FSSAM", "small"]
    else:
        cmd = [str(fake), f"--master_port={free_port()}", "--nproc_per_node=2",
               "--max-restarts=0", "--shutdown-timeout=2", str(REPO / "train.py")]
    out = open(exp_dir / "out.txt", "ab")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen(cmd, cwd=exp_dir, env=run_env, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, exp_dir: Path, timeout: float = 240) -> int:
    """The run's exit status (every process of it killed after ``timeout``)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        raise AssertionError(f"run did not end in {timeout} s:\n{output(exp_dir)}") from None


def kill_tree(root_pid: int) -> None:
    """SIGKILL ``root_pid`` and every process below it (workers live in their own sessions)."""
    parents = _parents()
    for pid in [p for p in parents if _below(p, root_pid, parents)] + [root_pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def output(exp_dir: Path) -> str:
    return (exp_dir / "out.txt").read_text(errors="replace")[-4000:]


def wait_for_iteration(exp_dir: Path, iteration: int, proc: subprocess.Popen,
                       timeout: float = 180) -> int:
    """Poll metrics.jsonl until a train record reaches ``iteration``; returns the last."""
    metrics = exp_dir / RUN / "metrics.jsonl"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"the run ended early:\n{output(exp_dir)}"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        done = [json.loads(line)["iteration"] for line in lines if '"train"' in line]
        if done and done[-1] >= iteration:
            return done[-1]
        time.sleep(0.02)
    raise AssertionError(f"iteration {iteration} not reached:\n{output(exp_dir)}")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return parents


def _below(pid: int, root_pid: int, parents: dict[int, int]) -> bool:
    while pid in parents and pid != root_pid:
        pid = parents[pid]
    return pid == root_pid


def worker_pid(root_pid: int, rank: int) -> int:
    """The torchrun worker of ``rank`` below ``root_pid`` (train.sh or torchrun), not one
    of its data-loading processes."""
    parents = _parents()
    mark = f"RANK={rank}".encode()
    for pid, parent in parents.items():
        if (pid != root_pid and _below(pid, root_pid, parents) and mark in _environ(pid)
                and mark not in _environ(parent)):
            return pid
    raise AssertionError(f"no process of rank {rank} below {root_pid}")


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def assert_same_run(a: Path, b: Path) -> None:
    """Two runs ended with identical weights, optimizer states and records."""
    first, second = load_checkpoint(a / RUN / "last.pt"), load_checkpoint(b / RUN / "last.pt")
    assert first["iteration"] == second["iteration"] == ITERATIONS
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
    for name, optimizer in first["optimizers"].items():
        for index, state in optimizer["state"].items():
            for key, value in state.items():
                other = second["optimizers"][name]["state"][index][key]
                assert torch.equal(value, other), (name, index, key)
    assert first["best_miou"] == second["best_miou"]
    assert records(a) == records(b)


def records(exp_dir: Path) -> list[dict]:
    lines = (exp_dir / RUN / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
