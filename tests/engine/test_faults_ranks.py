"""Faults of a 2-process CPU (gloo) run under train.sh and the real torchrun: a stop signal
at a random step, a rank killed mid-epoch, a rank that stops answering. Each ends with the
weights of an uninterrupted run, or with an error naming the rank in bounded time."""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from fssam.engine.checkpoint import load_checkpoint
from fssam.engine.preemption import EXIT_PREEMPTED

from .fault_runs import (ITERATIONS, RUN, assert_same_run, finish, kill_tree, output,
                         overrides, session_dir, shared_toy, start, wait_for_iteration,
                         worker_pid)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return shared_toy(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory) -> Path:
    """An uninterrupted run through train.sh (exit 0), made once for every xdist worker."""
    exp_dir = session_dir(tmp_path_factory) / "fault_reference"
    with open(f"{exp_dir}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (exp_dir / "done").is_file():
            shutil.rmtree(exp_dir, ignore_errors=True)
            status = finish(start(exp_dir, overrides(toy, exp_dir)), exp_dir)
            assert status == 0, output(exp_dir)
            (exp_dir / "done").write_text("")
    return exp_dir


def stop_at_a_random_step(toy, exp_dir: Path, sig: signal.Signals, low: int,
                          high: int) -> int:
    """Start (or resume) the run, send ``sig`` to train.sh at a random step in low..high;
    returns the iteration it saved."""
    proc = start(exp_dir, overrides(toy, exp_dir))
    reached = wait_for_iteration(exp_dir, random.randint(low, high), proc)
    proc.send_signal(sig)  # to train.sh, which passes it to torchrun, which passes it on
    status = finish(proc, exp_dir)
    log = output(exp_dir)
    assert status == EXIT_PREEMPTED, log
    stopped = load_checkpoint(exp_dir / RUN / "last.pt")["iteration"]
    assert reached <= stopped < ITERATIONS, (reached, stopped, log)
    assert f"stopped after iteration {stopped} on {sig.name}" in log
    assert f"train.sh: preempted {stopped} {sig.name}" in log
    return stopped


def test_sigterm_then_sigusr1_at_random_steps_then_restarts_give_the_same_weights(
        toy, reference, tmp_path):
    first = stop_at_a_random_step(toy, tmp_path, signal.SIGTERM, 2, 6)
    second = stop_at_a_random_step(toy, tmp_path, signal.SIGUSR1, first + 2, ITERATIONS - 4)
    assert finish(start(tmp_path, overrides(toy, tmp_path)), tmp_path) == 0, output(tmp_path)
    log = (tmp_path / RUN / "train.log").read_text()
    assert [int(i) for i in re.findall(r"resumed from .* at iteration (\d+)", log)] == [
        first, second]
    assert_same_run(reference, tmp_path)


def test_a_rank_killed_mid_epoch_is_restarted_and_the_run_finishes_alone(
        toy, reference, tmp_path):
    proc = start(tmp_path, overrides(toy, tmp_path, "trainer.save_every=2"))
    reached = wait_for_iteration(tmp_path, random.randint(3, 6), proc)
    os.kill(worker_pid(proc.pid, 1), signal.SIGKILL)
    assert finish(proc, tmp_path) == 0, output(tmp_path)  # MAX_RESTARTS default: 3
    log = (tmp_path / RUN / "train.log").read_text()
    resumed = re.findall(r"resumed from .* at iteration (\d+)", log)
    assert len(resumed) == 1 and reached - 2 <= int(resumed[0]) <= reached + 1, (reached, log)
    assert_same_run(reference, tmp_path)


def test_a_rank_that_stops_answering_is_named_within_the_timeout(toy, tmp_path):
    timeout = 8
    proc = start(tmp_path, overrides(toy, tmp_path, f"trainer.dist_timeout_s={timeout}"),
                 via="torchrun")
    wait_for_iteration(tmp_path, 2, proc)
    stopped = worker_pid(proc.pid, 1)
    try:
        os.kill(stopped, signal.SIGSTOP)
        began = time.monotonic()
        log = tmp_path / RUN / "train.log"
        while "stopped answering" not in log.read_text() and time.monotonic() - began < 60:
            time.sleep(0.05)
        detected = time.monotonic() - began
        os.kill(stopped, signal.SIGKILL)  # else torchrun waits its fixed 30 s to kill it
        status = finish(proc, tmp_path, timeout=60)
    finally:
        kill_tree(proc.pid)  # rank 1 too, stopped or not
    text = output(tmp_path)
    assert status != 0
    assert re.search(r"PeerLostError: rank 0 of 2 stopped training: rank 1 stopped answering",
                     text), text
    assert "rank 1 stopped answering" in log.read_text()
    # the step in flight (< 1 s), the collective's timeout, the heartbeat window (5 s)
    assert timeout < detected < timeout + 5 + 6, (detected, text)
