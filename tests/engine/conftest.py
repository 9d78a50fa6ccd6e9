"""Fixtures shared by the evaluation and testing tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fssam.data.toy import make_toy_pascal


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: tiny tensors, and no oversubscription under pytest -n 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic PASCAL-layout dataset (60 images)."""
    root = tmp_path_factory.mktemp("toy")
    make_toy_pascal(root, num_images=60, seed=0, workers=1)
    return root


@pytest.fixture(scope="module")
def reuse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic PASCAL-layout dataset with 37 evaluation images, at least 8 per novel
    class of fold 0: 5-shot episodes that share images, as the benchmarks' do."""
    root = tmp_path_factory.mktemp("toy_reuse")
    make_toy_pascal(root, num_images=60, seed=0, workers=1, val_fraction=0.9, same_fold_p=0.95)
    return root
