"""Crash-safe writes: a failure while writing leaves the previous file and no temporary."""

from __future__ import annotations

import pytest

from fssam.utils.io import atomic_write, atomic_write_text


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second" and [p.name for p in path.parent.iterdir()] == ["file.txt"]


def test_failure_mid_write_keeps_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write_text(path, "good")

    def half_then_crash(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]
