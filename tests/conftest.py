"""Helpers shared by every test directory: the module behind an entry-point script, and one
intra-op thread."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def script_module(script: Path) -> ModuleType:
    """The module whose ``main`` the entry-point file ``script`` (``scripts/*.py``,
    ``train.py``...) runs: every such file is a thin wrapper around one module."""
    assert script.is_file(), f"{script} does not exist"
    found = re.search(r"^from (fssam[\w.]*) import main$", script.read_text(), re.MULTILINE)
    assert found, f"{script} does not run a fssam module's main"
    return importlib.import_module(found.group(1))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: tiny tensors, and no oversubscription under pytest -n 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
