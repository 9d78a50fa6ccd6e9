"""``mamba_ssm``'s CUDA selective scan (the release's kernel), used when it is installed.

Optional: ``pip install "fssam[mamba]"``. Nothing else in the project needs it.
"""

from __future__ import annotations

import importlib.util

from torch import Tensor

from fssam.models.hmnet.scan.common import check_arguments, no_autocast


def mamba_ssm_installed() -> bool:
    """Whether the ``mamba_ssm`` package can be found (it is imported only when used)."""
    return importlib.util.find_spec("mamba_ssm") is not None


def selective_scan_mamba(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Tensor | None = None, z: Tensor | None = None,
                         delta_bias: Tensor | None = None, delta_softplus: bool = False,
                         return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``selective_scan`` by ``mamba_ssm.selective_scan_fn`` on float32 copies of the
    inputs (CUDA tensors only)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    check_arguments(u, delta, A, B, C, D, z, delta_bias)

    def f32(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.float()

    with no_autocast(u.device):
        return selective_scan_fn(u.float(), delta.float(), A.float(), B.float(), C.float(),
                                 f32(D), f32(z), f32(delta_bias), delta_softplus,
                                 return_last_state)
