"""Shared HMNet test pieces: the release's scan cases (``release_name`` is parametrized over
them) and random scan cases, the release's reference tensors, and its weights rebuilt."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from fssam.models.hmnet import ss2d

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "parity_hmnet"
CASES = torch.load(FIXTURES / "scan_cases.pt", weights_only=True)
SCAN_NAMES = sorted({k.split(".")[0] for k in CASES if k != "meta" and f"{k.split('.')[0]}.h"
                     not in CASES})


def _release_case(name: str) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """Arguments, expected output and expected last state (or None) of one release case."""
    kwargs = {k.split(".", 1)[1]: v for k, v in CASES.items() if k.startswith(name + ".")}
    out, last = kwargs.pop("out"), kwargs.pop("last_state", None)
    kwargs = {k: v.item() if v.dim() == 0 else v for k, v in kwargs.items()}
    return kwargs, out, last


def _random_case(seed: int, batch: int = 2, channels: int = 4, state: int = 3,
                length: int = 37, bc: str = "grouped", groups: int = 2, with_d: bool = True,
                with_z: bool = True, with_bias: bool = True, softplus: bool = True) -> dict:
    """Keyword arguments of ``selective_scan`` (return_last_state=True). ``bc``: grouped
    (b, g, n, L), shared (b, n, L) or constant (d, n) B and C."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    B, C = {"grouped": lambda: (randn(batch, groups, state, length),
                                randn(batch, groups, state, length)),
            "shared": lambda: (randn(batch, state, length), randn(batch, state, length)),
            "constant": lambda: (randn(channels, state), randn(channels, state))}[bc]()
    delta = randn(batch, channels, length) if softplus else torch.rand(
        batch, channels, length, generator=g)
    return {"u": randn(batch, channels, length), "delta": delta,
            "A": -0.3 - 4 * torch.rand(channels, state, generator=g), "B": B, "C": C,
            "D": randn(channels) if with_d else None,
            "z": randn(batch, channels, length) if with_z else None,
            "delta_bias": 0.5 * randn(channels) if with_bias else None,
            "delta_softplus": softplus, "return_last_state": True}


def _grads(fn, kwargs: dict, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Output, last state and the gradients of a fixed random linear function of both
    with respect to every tensor argument."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in kwargs.items()
              if isinstance(v, torch.Tensor)}
    y, last = fn(**{**kwargs, **leaves})
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g)).sum() + (
        last * torch.randn(last.shape, generator=g)).sum()
    loss.backward()
    return y.detach(), last.detach(), {k: v.grad for k, v in leaves.items()}


def rebuild_release_weights(backbone: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The release model's state_dict entries under ``prefix`` (prefix stripped), rebuilt
    from ``weights_<backbone>.pt`` by the parity README's recipe; every float tensor is
    checked against its stored SHA-256."""
    spec = torch.load(FIXTURES / f"weights_{backbone}.pt", weights_only=True)
    state = {}
    for row in spec["rows"]:
        key, shape = row["key"], tuple(row["shape"])
        if not key.startswith(prefix):
            continue
        if row["kind"] == "recipe":
            k = np.random.RandomState(row["seed"]).randint(-128, 128, size=int(np.prod(shape)))
            value = (row["base"] + k.astype(np.float64) * 2.0 ** (row["exp"] - 7))
            tensor = torch.from_numpy(value.astype(np.float32).reshape(shape))
        elif row["kind"] == "stored":
            tensor = spec["stored"][key]
        else:
            tensor = torch.zeros(shape, dtype=torch.long)
        if tensor.is_floating_point():
            digest = hashlib.sha256(tensor.numpy().astype("<f4").tobytes()).hexdigest()
            assert digest == spec["sha256"][key], f"rebuilt {key} does not match its SHA-256"
        state[key[len(prefix):]] = tensor
    return state


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "release_name" in metafunc.fixturenames:
        metafunc.parametrize("release_name", SCAN_NAMES)


@pytest.fixture
def release_case():
    return _release_case


@pytest.fixture
def random_case():
    return _random_case


@pytest.fixture
def scan_grads():
    return _grads


@pytest.fixture(scope="session")
def hmnet_parity():
    """Loader of ``tests/fixtures/parity_hmnet/<name>.pt`` by name, cached."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def release_weights():
    """``release_weights(backbone, prefix)``: the release's rebuilt state_dict entries."""
    return rebuild_release_weights


@pytest.fixture
def recorded(monkeypatch):
    """Every ``selective_scan`` and ``query_intercepted_step`` call SS2D makes while the test
    runs: ``{"scan": [...], "qim": [...]}`` of (named arguments, result). Per forward of the
    stack: a self block makes one scan call (query and support stacked on the batch, query
    first); a hybrid block the recapped scan, then the support-state scan, then one QIM."""
    calls: dict[str, list] = {"scan": [], "qim": []}

    def recorder(name, fn):
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            calls[name].append((inspect.signature(fn).bind(*args, **kwargs).arguments, result))
            return result
        return call
    monkeypatch.setattr(ss2d, "selective_scan", recorder("scan", ss2d.selective_scan))
    monkeypatch.setattr(ss2d, "query_intercepted_step",
                        recorder("qim", ss2d.query_intercepted_step))
    return calls
