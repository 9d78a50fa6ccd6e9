"""A full disk or a read-only folder while writing results, list caches and records: the
previous file stays whole and the error names the file and the cause (injected OSErrors;
tests/engine/test_faults_single.py also fills a real tmpfs with a checkpoint)."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest

from fssam.data.sources import build_image_list
from fssam.engine.tester import write_results
from fssam.utils import io as io_module
from fssam.utils.io import WriteError, atomic_write_text
from fssam.utils.logging import JsonlWriter

from ..data.conftest import make_pascal


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write fails at its fsync with ENOSPC (after its bytes were buffered)."""
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(io_module.os, "fsync", no_space)


def read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No file can be created (a read-only mount)."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(io_module.tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("fault, cause", [(full_disk, "No space left on device (ENOSPC)"),
                                          (read_only, "Read-only file system (EROFS)")])
def test_results_json_keeps_the_previous_file(tmp_path, monkeypatch, fault, cause):
    path = tmp_path / "results.json"
    write_results({"miou": 50.0}, path)
    fault(monkeypatch)
    with pytest.raises(WriteError, match=re.escape(f"cannot write {path}: {cause}")):
        write_results({"miou": 60.0}, path)
    assert json.loads(path.read_text()) == {"miou": 50.0}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_new_file_that_cannot_be_written_says_nothing_was_written(tmp_path, monkeypatch):
    read_only(monkeypatch)
    with pytest.raises(WriteError, match="nothing was written") as caught:
        atomic_write_text(tmp_path / "new.txt", "x")
    assert caught.value.errno == errno.EROFS and isinstance(caught.value, OSError)


def test_list_cache_names_the_cache_and_its_setting(pascal_root_copy, tmp_path, monkeypatch):
    full_disk(monkeypatch)
    with pytest.raises(WriteError, match=r"cannot write .*lists.*pascal_fold0_train_\w+\.json: "
                                         r"No space left on device .*dataset\.cache_dir"):
        build_image_list(dataset="pascal", root=str(pascal_root_copy), fold=0, mode="train",
                         train_list="all", cache_dir=str(tmp_path / "lists"), workers=1)
    assert not list((tmp_path / "lists").glob("*"))


def test_metrics_records_name_their_file(tmp_path, monkeypatch):
    writer = JsonlWriter(tmp_path / "metrics.jsonl")

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer._file = Full()
    with pytest.raises(WriteError, match=re.escape(f"cannot append to {tmp_path / 'metrics.jsonl'}"
                                                   f": No space left on device")):
        writer.write({"iteration": 1})
    writer.close()  # the lost record was reported: closing does not raise again


@pytest.fixture
def pascal_root_copy(tmp_path: Path) -> Path:
    return make_pascal(tmp_path / "pascal")
