"""Helpers shared by every test directory: importing a script as a module and one
intra-op thread."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def load_script(script: Path, name: str | None = None) -> ModuleType:
    """``script`` (a file, e.g. ``SCRIPTS / "demo.py"``) imported as a fresh module named
    ``name`` (default: the file's stem; ``"__main__"`` runs its main block)."""
    spec = importlib.util.spec_from_file_location(name or script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: tiny tensors, and no oversubscription under pytest -n 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
