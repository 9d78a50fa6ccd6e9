"""Faults of a run under torchrun: a rank that stops answering is named, and an error that
a restart would meet again is not retried.

Every rank's heartbeat thread counts up a key in torchrun's own key-value store (the
agent's: it outlives the workers and their restarts) every ``HEARTBEAT_S`` seconds. When
a rank's training fails (a collective that timed out after ``trainer.dist_timeout_s``, a
peer whose connection closed, or its own error), it posts its failure in the store and
watches the counters for ``WINDOW_S``: ranks that neither beat nor posted are named as
lost (``PeerLostError``), ranks that posted are named with their error.

torchrun restarts the whole group after any failure (``--max-restarts``), which mends a
lost rank but not a bad file, a full disk, a non-finite loss or a refused resume: those
are recorded in the store (``FATAL_KEY``), and a restarted group that finds one stops at
once with it (``EarlierFailureError``) instead of training again up to the same error.
Outside torchrun (one plain process) none of this is needed and nothing is started.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import threading
import time
from collections.abc import Iterator

import torch.distributed as dist

from fssam.utils.dist import DistInfo

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
WINDOW_S = 2.5 * HEARTBEAT_S
STORE_TIMEOUT_S = 10.0
FATAL_KEY = "fssam/fatal"


class PeerLostError(RuntimeError):
    """A collective failed because other ranks stopped answering or failed; the message
    names them."""


class EarlierFailureError(RuntimeError):
    """An earlier attempt of this torchrun job failed with an error a restart meets again."""


def is_fatal(err: BaseException) -> bool:
    """Errors a restart would meet again: bad data files, failed writes, a non-finite loss,
    a refused resume or config."""
    from fssam.data.bad_files import BadFileError
    from fssam.engine.resume_check import ResumeMismatchError
    from fssam.engine.trainer import NonFiniteLossError
    from fssam.utils.checks import ConfigError
    from fssam.utils.io import WriteError
    return isinstance(err, (BadFileError, WriteError, NonFiniteLossError, ResumeMismatchError,
                            ConfigError))


def agent_store() -> dist.Store | None:
    """A client of torchrun's store, or None outside torchrun."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                         is_master=False,
                         timeout=datetime.timedelta(seconds=STORE_TIMEOUT_S))


def _summary(err: BaseException) -> str:
    """``Type: message`` on one line; for an error raised again from a DataLoader process
    ("Caught X in DataLoader worker process 0." and its traceback), the original message."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    line = lines[0] if lines else ""
    if line.startswith("Caught ") and len(lines) > 1:
        line = lines[-1].split(": ", 1)[-1]
    return f"{type(err).__name__}: {line}"[:800]


class Heartbeat:
    """A daemon thread adding 1 to ``<prefix>beat/<rank>`` every ``HEARTBEAT_S``."""

    def __init__(self, prefix: str, rank: int) -> None:
        self.key = f"{prefix}beat/{rank}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fssam-heartbeat", daemon=True)

    def _run(self) -> None:
        try:
            store = agent_store()
            while store is not None and not self._stop.is_set():
                store.add(self.key, 1)
                self._stop.wait(HEARTBEAT_S)
        except (RuntimeError, OSError) as err:  # the store went away: nothing to tell
            log.debug("heartbeat stopped: %s", err)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def describe_peers(store: dist.Store, prefix: str, world_size: int, rank: int) -> list[str]:
    """Other ranks that posted a failure (with it) or did not beat during ``WINDOW_S``."""
    others = [r for r in range(world_size) if r != rank]
    before = {r: store.add(f"{prefix}beat/{r}", 0) for r in others}
    time.sleep(WINDOW_S)
    found = []
    for r in others:
        if store.check([f"{prefix}failed/{r}"]):
            found.append(f"rank {r} failed: {store.get(f'{prefix}failed/{r}').decode()}")
        elif store.add(f"{prefix}beat/{r}", 0) == before[r]:
            found.append(f"rank {r} stopped answering (no heartbeat in the {WINDOW_S:g} s "
                         f"after this failure: its process died, hangs or was stopped)")
    return found


def _on_failure(err: Exception, store: dist.Store, prefix: str, info: DistInfo) -> None:
    """Record ``err`` in the store, then raise PeerLostError when other ranks are to blame."""
    if is_fatal(err):
        store.set(FATAL_KEY, f"rank {info.rank}: {_summary(err)}")
    store.set(f"{prefix}failed/{info.rank}", _summary(err))
    if info.world_size == 1 or is_fatal(err):
        return
    peers = describe_peers(store, prefix, info.world_size, info.rank)
    if peers:
        raise PeerLostError(f"rank {info.rank} of {info.world_size} stopped training: "
                            f"{'; '.join(peers)}. This rank's error: {_summary(err)}") from err


def check_earlier_failure(store: dist.Store | None) -> None:
    """EarlierFailureError when an earlier attempt of this torchrun job recorded a fatal
    error."""
    if store is None or not store.check([FATAL_KEY]):
        return
    raise EarlierFailureError(
        f"not training again: an earlier attempt of this job failed with an error a restart "
        f"meets again ({store.get(FATAL_KEY).decode()}). Fix it, then start the job again")


@contextlib.contextmanager
def guard(info: DistInfo) -> Iterator[None]:
    """Around a run's training under torchrun: check for an earlier fatal error, beat,
    and on failure name the ranks to blame (see the module's docstring)."""
    store = agent_store()
    check_earlier_failure(store)
    if store is None:
        yield
        return
    prefix = f"fssam/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
    beat = Heartbeat(prefix, info.rank) if info.world_size > 1 else contextlib.nullcontext()
    with beat:
        try:
            yield
        except Exception as err:
            try:
                _on_failure(err, store, prefix, info)
            except PeerLostError as lost:
                log.error("%s", lost)
                raise
            except (RuntimeError, OSError) as store_err:
                log.error("torchrun's store is unreachable too (%s): the node of rank 0 may "
                          "be lost", store_err)
            log.error("training stopped: %s", _summary(err))
            raise
