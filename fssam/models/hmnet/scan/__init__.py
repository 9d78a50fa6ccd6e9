"""Mamba's selective scan behind one function, without requiring the ``mamba_ssm`` package.

``selective_scan`` takes the arguments of ``mamba_ssm``'s ``selective_scan_fn`` (as HMNet
calls it), always computes in float32 (whatever the input dtype or autocast) and returns
``y`` or ``(y, last_state)``. Implementations (``impl``):

- ``"torch"``: chunked PyTorch scan, any device, with a memory-saving backward;
- ``"triton"``: our Triton kernel (CUDA; on CPU only under ``TRITON_INTERPRET=1``), forward
  by the kernel, backward by the PyTorch scan's;
- ``"mamba_ssm"``: the release's CUDA kernel, when the optional package is installed;
- ``"naive"``: the per-token loop that defines the scan (slow; the tests' oracle);
- ``"auto"`` (default): ``mamba_ssm`` if installed and the tensors are on CUDA, else
  ``triton`` on CUDA, else ``torch``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import torch
from torch import Tensor

from fssam.models.hmnet.scan.mamba import mamba_ssm_installed, selective_scan_mamba
from fssam.models.hmnet.scan.reference import selective_scan_naive
from fssam.models.hmnet.scan.torch_scan import selective_scan_torch

__all__ = ["IMPLS", "available_impls", "resolve_impl", "selective_scan",
           "selective_scan_naive", "selective_scan_torch"]

IMPLS = ("auto", "torch", "triton", "mamba_ssm", "naive")


def _triton_usable(device: torch.device) -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET", "0") == "1"


def available_impls(device: torch.device | str) -> list[str]:
    """The implementations (other than ``auto``) that can run on ``device``."""
    device = torch.device(device)
    usable = {"torch": True, "naive": True, "triton": _triton_usable(device),
              "mamba_ssm": device.type == "cuda" and mamba_ssm_installed()}
    return [name for name in IMPLS[1:] if usable[name]]


def resolve_impl(impl: str, device: torch.device | str) -> str:
    """The implementation ``impl`` stands for on ``device``; a ValueError names an unknown
    one, a RuntimeError one that cannot run there."""
    if impl not in IMPLS:
        raise ValueError(f"selective_scan: unknown impl {impl!r}; choose one of {IMPLS}")
    device = torch.device(device)
    usable = available_impls(device)
    if impl == "auto":
        return next(name for name in ("mamba_ssm", "triton", "torch")
                    if name in usable and (name == "torch" or device.type == "cuda"))
    if impl not in usable:
        why = {"triton": "needs the triton package and CUDA tensors (or TRITON_INTERPRET=1)",
               "mamba_ssm": "needs the mamba_ssm package (pip install 'fssam[mamba]') and "
                            "CUDA tensors"}[impl]
        raise RuntimeError(f"selective_scan: impl {impl!r} is not available on {device}: {why}")
    return impl


def _function(name: str) -> Callable[..., Tensor | tuple[Tensor, Tensor]]:
    if name == "triton":
        from fssam.models.hmnet.scan.triton_scan import selective_scan_triton
        return selective_scan_triton
    return {"torch": selective_scan_torch, "naive": selective_scan_naive,
            "mamba_ssm": selective_scan_mamba}[name]


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False, impl: str = "auto"
                   ) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba's selective scan: ``u``, ``delta`` (b, d, L); ``A`` (d, n); ``B``, ``C`` (d, n),
    (b, n, L) or (b, g, n, L); ``D``, ``delta_bias`` (d,); ``z`` (b, d, L). Returns ``y``
    (b, d, L) in float32 and, with ``return_last_state``, the final state (b, d, n)."""
    fn = _function(resolve_impl(impl, u.device))
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
              delta_softplus=delta_softplus, return_last_state=return_last_state)
