"""Shared fixtures: the micro SAM 2 of the parity fixtures, reference tensors, episodes."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from fssam.models.fssam.model import FSSAM
from fssam.models.fssam.sam2_adapter import build_sam2

PARITY = Path(__file__).resolve().parents[2] / "fixtures" / "parity"
MICRO_CONFIG = str(PARITY / "sam2_micro_v1.yaml")
MICRO_WEIGHTS = str(PARITY / "micro_weights.pt")


def load_parity(name: str) -> dict:
    """A parity fixture file (``inputs_1shot``, ``expected_5shot``, ...)."""
    return torch.load(PARITY / f"{name}.pt", weights_only=True)


def make_batch(inputs: dict) -> dict:
    """Model batch from a parity input file; K-shot priors [b,K,2,H,W] are averaged over K."""
    priors = inputs["priors"]
    if priors.dim() == 5:
        priors = priors.mean(1)
    return {"query_img": inputs["x"].float(), "support_imgs": inputs["s_x"].float(),
            "support_masks": inputs["s_y"].long(), "priors": priors}


def micro_sam2():
    """The micro SAM 2 with the fixture weights, eval mode."""
    return build_sam2(MICRO_CONFIG, MICRO_WEIGHTS, image_size=None)


def micro_fssam(**kwargs) -> FSSAM:
    """FSSAM on the micro SAM 2, no prior generator (priors must be given), eval mode."""
    return FSSAM(sam2=micro_sam2(), prior_generator=None, **kwargs).eval()


class MaxDiff:
    """Records the largest absolute difference per fixture group while asserting tolerances."""

    def __init__(self) -> None:
        self.worst: dict[str, tuple[float, str]] = {}

    def __call__(self, group: str, name: str, actual: torch.Tensor, expected: torch.Tensor,
                 atol: float) -> None:
        assert actual.shape == expected.shape, f"{name}: {actual.shape} vs {expected.shape}"
        diff = (actual.detach().float() - expected.float()).abs().max().item()
        if diff > self.worst.get(group, (-1.0, ""))[0]:
            self.worst[group] = (diff, name)
        assert diff <= atol, f"{name}: max |diff| {diff:.3g} > {atol:g}"


_MAX_DIFF = MaxDiff()


@pytest.fixture(scope="session")
def parity():
    """Loader of parity files by name, cached."""
    return functools.cache(load_parity)


@pytest.fixture(scope="session")
def parity_batch(parity):
    """Model batch of ``inputs_<n>shot``."""
    return lambda shots: make_batch(parity(f"inputs_{shots}shot"))


@pytest.fixture
def fssam_factory():
    """Builds a fresh micro FSSAM (eval mode, priors must be given)."""
    return micro_fssam


@pytest.fixture
def sam2_factory():
    """Builds a fresh micro SAM 2 (eval mode)."""
    return micro_sam2


@pytest.fixture(scope="session")
def max_diff() -> MaxDiff:
    return _MAX_DIFF


def pytest_terminal_summary(terminalreporter):
    if _MAX_DIFF.worst:
        terminalreporter.section("largest |diff| vs parity fixtures")
        for group, (diff, name) in sorted(_MAX_DIFF.worst.items()):
            terminalreporter.write_line(f"{group}: {diff:.3g} ({name})")
