"""The chunked PyTorch scan against the per-token loop and the release's cases."""

from __future__ import annotations

import pytest
import torch

from fssam.models.hmnet.scan import selective_scan, selective_scan_naive, torch_scan
from fssam.models.hmnet.scan.torch_scan import plan, selective_scan_torch

TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(params=["one block", "many blocks"])
def blocks(request, monkeypatch):
    """Run with the default block size, then with blocks of one sub-chunk (16 tokens)."""
    if request.param == "many blocks":
        monkeypatch.setattr(torch_scan, "BLOCK_ELEMENTS", 1)
    return request.param


def test_release_cases(release_name, release_case, blocks):
    kwargs, out, last = release_case(release_name)
    result = selective_scan_torch(**kwargs)
    y = result[0] if kwargs["return_last_state"] else result
    torch.testing.assert_close(y, out, **TOL)
    if last is not None:
        torch.testing.assert_close(result[1], last, **TOL)


@pytest.mark.parametrize("bc", ["grouped", "shared", "constant"])
@pytest.mark.parametrize("length", [1, 16, 37, 70])
def test_random_cases_match_naive(bc, length, blocks, random_case):
    kwargs = random_case(seed=length, bc=bc, length=length)
    y, last = selective_scan_torch(**kwargs)
    y_ref, last_ref = selective_scan_naive(**kwargs)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(last, last_ref, **TOL)


@pytest.mark.parametrize("options", [
    {"with_d": False, "with_z": False, "with_bias": False, "softplus": False},
    {"with_d": True, "with_z": False, "with_bias": True, "softplus": True},
    {"with_d": False, "with_z": True, "with_bias": False, "softplus": True},
])
def test_optional_terms_match_naive(options, random_case):
    kwargs = random_case(seed=3, length=23, **options)
    for last_state in (False, True):
        kwargs["return_last_state"] = last_state
        torch.testing.assert_close(selective_scan_torch(**kwargs),
                                   selective_scan_naive(**kwargs), **TOL)


@pytest.mark.parametrize("bc", ["grouped", "shared", "constant"])
@pytest.mark.parametrize("length", [5, 40])
def test_gradients_match_naive(bc, length, blocks, random_case, scan_grads):
    kwargs = random_case(seed=10 + length, bc=bc, length=length)
    y, last, g = scan_grads(selective_scan_torch, kwargs)
    y_ref, last_ref, g_ref = scan_grads(selective_scan_naive, kwargs)
    torch.testing.assert_close(y, y_ref, **TOL)
    for name, expected in g_ref.items():
        torch.testing.assert_close(g[name], expected, atol=1e-4, rtol=1e-4, msg=name)


def test_gradient_of_output_only_and_of_state_only(random_case):
    kwargs = random_case(seed=5, length=33, with_z=False)
    for pick in (0, 1):
        leaves = {k: v.clone().requires_grad_(True) for k, v in kwargs.items()
                  if isinstance(v, torch.Tensor)}
        ours = torch.autograd.grad(selective_scan_torch(**{**kwargs, **leaves})[pick].sum(),
                                   [leaves["delta"], leaves["A"]])
        ref = torch.autograd.grad(selective_scan_naive(**{**kwargs, **leaves})[pick].sum(),
                                  [leaves["delta"], leaves["A"]])
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, **TOL)


def test_strong_decay_underflows_to_zero_without_nan(random_case):
    kwargs = random_case(seed=7, length=300, with_z=False)
    kwargs["A"] = torch.full_like(kwargs["A"], -60.0)
    kwargs["delta"] = kwargs["delta"].abs() + 3.0
    y, last = selective_scan_torch(**kwargs)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    torch.testing.assert_close(y, selective_scan_naive(**kwargs)[0], **TOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_float32(dtype, random_case):
    kwargs = random_case(seed=11, length=20)
    low = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    y, last = selective_scan(**low)
    assert y.dtype == last.dtype == torch.float32
    torch.testing.assert_close((y, last), selective_scan_naive(**low), **TOL)


def test_float32_under_autocast(random_case):
    kwargs = random_case(seed=12, length=20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, last = selective_scan(**kwargs)
    assert y.dtype == last.dtype == torch.float32
    torch.testing.assert_close(y, selective_scan_naive(**kwargs)[0], **TOL)


@pytest.mark.parametrize("batch,length", [(1, 8192), (2, 12800), (10, 8192), (2, 37)])
def test_plan_covers_the_sequence_within_budget(batch, length):
    p = plan(batch, 2048, 16, length)
    assert p.block % p.subchunk == 0 and p.blocks * p.block == p.padded >= length
    assert p.padded - length < p.blocks * p.subchunk
    assert p.block * batch * 2048 * 16 <= max(torch_scan.BLOCK_ELEMENTS,
                                              p.subchunk * batch * 2048 * 16)
