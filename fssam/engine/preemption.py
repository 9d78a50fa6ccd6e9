"""Stopping on a signal: SIGTERM or SIGUSR1 (a cluster about to preempt or time out a job).

The handler only sets a flag: the rank finishes its step. After every step the ranks
all-reduce their flags (``StopRequest.agreed``), so all of them stop after the same step,
even when the signal reached only some of them or reached them during different steps;
the trainer then writes ``last.pt`` of that iteration and the process exits with
``EXIT_PREEMPTED``. Starting the run again resumes from that iteration exactly.

torchrun forwards the signals of its ``--signals-to-handle`` list (default SIGTERM,
SIGINT, SIGHUP, SIGQUIT: train.sh adds SIGUSR1) to each worker's process group, waits
``--shutdown-timeout`` seconds (default 30) and then kills what is left; it exits 1 after
a forwarded signal, whatever its workers returned. ``train.sh`` therefore learns how the
run ended from ``$FSSAM_STOP_FILE``, which the run writes once its checkpoint is safe.
(Read in torch 2.14's torch/distributed/elastic: when torchrun stops a group to restart it
after a failure, it sends SIGTERM too, and waits a fixed 30 s before SIGKILL whatever
``--shutdown-timeout`` says; with gloo a rank in a failed collective raises before that.)
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

import torch

from fssam.utils.dist import all_reduce_sum_cpu

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: stopped on request, start again to resume
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
STOP_FILE_ENV = "FSSAM_STOP_FILE"
PREEMPTED = "preempted"


class StopRequest:
    """While entered: ``signals`` set a flag instead of ending the process (main thread
    only; elsewhere, or with no signals, nothing is installed). ``agreed()`` tells every
    rank whether any rank got one; the previous handlers come back on exit."""

    def __init__(self, signals: Sequence[str] = STOP_SIGNALS) -> None:
        self.signals = [signal.Signals[name] for name in signals]
        self.received: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def agreed(self) -> bool:
        """True on every rank when any rank received a stop signal (a collective: every
        rank calls it after the same step)."""
        flag = torch.tensor([0 if self.received is None else 1], dtype=torch.int64)
        return bool(all_reduce_sum_cpu(flag).item() > 0)


class StopSignalsToRank:
    """``worker_init_fn`` of data-loading processes: the stop signals are their rank's
    business. torchrun sends them to each worker's whole process group and clusters to
    every process, and PyTorch's loader processes die on a SIGTERM that is not their
    parent's, failing the step the rank was to finish. Here SIGUSR1 is ignored, and SIGTERM
    ends a loader process only when it comes from the rank itself (``main_pid``) or the
    process's parent, as the loader's shutdown and Python's exit send it: a thread waits for
    it with ``sigwaitinfo``, which tells the sender. Where that is unavailable (not Linux),
    the loader keeps PyTorch's behaviour."""

    def __init__(self, main_pid: int) -> None:
        self.main_pid = main_pid

    def __call__(self, worker_id: int) -> None:
        if not hasattr(signal, "sigwaitinfo"):
            return
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads made later too
        senders = {self.main_pid, os.getppid()}
        threading.Thread(target=_end_on_sigterm_from, args=(senders,), daemon=True,
                         name="fssam-sigterm").start()


def _end_on_sigterm_from(senders: set[int]) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid in senders:
            os._exit(0)


def report_stop(iteration: int, received: str | None, local_rank: int) -> None:
    """After the checkpoint of ``iteration`` is safe: log it and, on each node's first
    process, write ``$FSSAM_STOP_FILE`` (when set) for the launcher."""
    why = received or "a stop signal on another rank"
    log.warning("stopped after iteration %d on %s; last.pt holds it: start the same command "
                "again to resume (exit status %d)", iteration, why, EXIT_PREEMPTED)
    path = os.environ.get(STOP_FILE_ENV)
    if path and local_rank == 0:
        Path(path).write_text(f"{PREEMPTED} {iteration} {why}\n", encoding="utf-8")


def exit_status(summary: dict) -> int:
    """The process's exit status for a trainer summary: ``EXIT_PREEMPTED`` after a stop
    on a signal, else 0."""
    return EXIT_PREEMPTED if summary.get("stopped") == PREEMPTED else 0
