"""On a CUDA machine: the Triton kernel (compiled) and, when installed, mamba_ssm's kernel
against the PyTorch scan, forward and backward. Skipped without CUDA (and mamba_ssm)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from fssam.models.hmnet.scan import selective_scan, torch_scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

IMPLS = [pytest.param("triton", marks=pytest.mark.skipif(
            importlib.util.find_spec("triton") is None, reason="needs triton")),
         pytest.param("mamba_ssm", marks=pytest.mark.skipif(
            importlib.util.find_spec("mamba_ssm") is None, reason="needs mamba_ssm"))]


def outputs_and_grads(kwargs: dict, impl: str, through_last: bool) -> dict:
    leaves = {k: v.cuda().requires_grad_(True) for k, v in kwargs.items()
              if isinstance(v, torch.Tensor)}
    y, last = selective_scan(**{**kwargs, **leaves}, impl=impl)
    g = torch.Generator(device="cuda").manual_seed(0)
    loss = (y * torch.randn(y.shape, device="cuda", generator=g)).sum()
    if through_last:
        loss = loss + (last * torch.randn(last.shape, device="cuda", generator=g)).sum()
    loss.backward()
    return {"y": y.detach(), "last": last.detach(), **{k: v.grad for k, v in leaves.items()}}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bc", ["grouped", "shared", "constant"])
def test_cuda_kernel_matches_torch_scan(impl, bc, random_case, monkeypatch):
    monkeypatch.setattr(torch_scan, "BLOCK_ELEMENTS", 1 << 12)  # several blocks
    kwargs = random_case(seed=0, batch=2, channels=64, state=16, length=300, bc=bc, groups=4)
    through_last = impl != "mamba_ssm"  # mamba_ssm does not backpropagate the last state
    ours = outputs_and_grads(kwargs, "torch", through_last)
    theirs = outputs_and_grads(kwargs, impl, through_last)
    for name, expected in ours.items():
        torch.testing.assert_close(theirs[name], expected, atol=1e-3, rtol=1e-3, msg=name)


@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_kernel_at_hmnet_size(impl):
    g = torch.Generator(device="cuda").manual_seed(0)
    kwargs = {"u": torch.randn(1, 2048, 4096, device="cuda", generator=g),
              "delta": torch.randn(1, 2048, 4096, device="cuda", generator=g) - 3,
              "A": -torch.arange(1, 17, device="cuda", dtype=torch.float32).repeat(2048, 1),
              "B": torch.randn(1, 4, 16, 4096, device="cuda", generator=g),
              "C": torch.randn(1, 4, 16, 4096, device="cuda", generator=g),
              "D": torch.ones(2048, device="cuda"), "delta_softplus": True,
              "return_last_state": True}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        y, last = selective_scan(**kwargs, impl=impl)
        y_ref, last_ref = selective_scan(**kwargs, impl="torch")
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, atol=5e-4, rtol=1e-3)
    torch.testing.assert_close(last, last_ref, atol=5e-4, rtol=1e-3)
