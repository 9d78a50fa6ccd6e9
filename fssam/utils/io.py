"""Crash-safe file writes shared by checkpoints, results, caches and downloads."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteError(OSError):
    """A file could not be written (full disk, read-only or forbidden folder...): the
    message names the file and the cause; ``errno`` is the system's. Any previous version of
    the file is intact."""


def write_error(path: Path, err: OSError) -> WriteError:
    """``err`` (raised while writing ``path``) as a WriteError naming both."""
    code = err.errno if err.errno is not None else errno.EIO
    cause = err.strerror or str(err)
    name = errno.errorcode.get(code, str(code))
    kept = "its previous version is intact" if path.is_file() else "nothing was written"
    return WriteError(code, f"cannot write {path}: {cause} ({name}); {kept}. Free space "
                            f"or choose a writable folder, then start again")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(binary_file)`` so that it is never seen half-written.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then
    renamed over ``path``: a crash at any point leaves the previous file intact and no
    temporary file behind. An OSError on the way (a full disk, a read-only folder) becomes
    a ``WriteError`` naming ``path`` and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise write_error(path, err) from err
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))
