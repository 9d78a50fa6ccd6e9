"""What every fast scan shares: argument checks, the float32 inputs of the recurrence, and
the skip term / gate applied after it.

The fast scans compute only the recurrence ``h <- exp(dt A) h + dt B u``, ``y0 = C h``;
``prepare`` turns ``selective_scan``'s arguments into its inputs and ``finish`` adds
``D u`` and the ``silu(z)`` gate, both with ordinary autograd.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ScanInputs(NamedTuple):
    """The recurrence's inputs in float32: ``u``, ``dt`` (b, d, L) with ``dt`` after
    bias and softplus; ``A`` (d, n); ``B``, ``C`` (b, g, n, L), shared by ``d // g``
    consecutive channels (possibly expanded views)."""

    u: Tensor
    dt: Tensor
    A: Tensor
    B: Tensor
    C: Tensor


def check_arguments(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                    D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None) -> None:
    """Raise a ValueError naming the argument whose shape does not fit the others."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, channels, length), got {tuple(u.shape)}")
    batch, channels, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta {tuple(delta.shape)} != u {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"selective_scan: A must be ({channels}, state), got {tuple(A.shape)}")
    state = A.shape[1]
    for name, m in (("B", B), ("C", C)):
        ok = {2: m.shape == (channels, state), 3: m.shape == (batch, state, length),
              4: m.dim() == 4 and m.shape[0] == batch and m.shape[2:] == (state, length)
              and m.shape[1] > 0 and channels % m.shape[1] == 0}.get(m.dim(), False)
        if not ok:
            raise ValueError(
                f"selective_scan: {name} must be ({channels}, {state}), ({batch}, {state}, "
                f"{length}) or ({batch}, groups, {state}, {length}) with groups dividing "
                f"{channels}; got {tuple(m.shape)}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and v.shape != (channels,):
            raise ValueError(f"selective_scan: {name} must be ({channels},), got {tuple(v.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z {tuple(z.shape)} != u {tuple(u.shape)}")


def grouped(m: Tensor, batch: int, length: int) -> Tensor:
    """B or C as (b, g, n, L): (d, n) becomes g = d groups constant over tokens (a view),
    (b, n, L) one group shared by all channels."""
    if m.dim() == 2:
        return m[None, :, :, None].expand(batch, -1, -1, length)
    if m.dim() == 3:
        return m.unsqueeze(1)
    return m


def prepare(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
            delta_bias: Tensor | None, delta_softplus: bool) -> ScanInputs:
    """Float32 inputs of the recurrence (the scan is float32 whatever the input dtype)."""
    u, dt = u.float(), delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    batch, _, length = u.shape
    return ScanInputs(u=u, dt=dt, A=A.float(), B=grouped(B.float(), batch, length),
                      C=grouped(C.float(), batch, length))


def finish(y0: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """``(y0 + D u) * silu(z)`` with the absent terms left out, in float32."""
    if D is not None:
        y0 = y0 + D.float()[:, None] * u
    if z is not None:
        y0 = y0 * F.silu(z.float())
    return y0


def no_autocast(device: torch.device) -> torch.autocast:
    """A context that keeps the scan's matmuls in float32 under any autocast."""
    return torch.autocast(device_type=device.type, enabled=False)


def run_scan(scan: type[torch.autograd.Function], u: Tensor, delta: Tensor, A: Tensor,
             B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
             delta_bias: Tensor | None, delta_softplus: bool,
             return_last_state: bool) -> Tensor | tuple[Tensor, Tensor]:
    """The body of every fast scan: checked arguments, float32 inputs outside autocast, the
    recurrence by ``scan`` (an autograd Function of ``ScanInputs`` returning the output
    without the D term and the last state), then the D and ``silu(z)`` terms."""
    check_arguments(u, delta, A, B, C, D, z, delta_bias)
    with no_autocast(u.device):
        inp = prepare(u, delta, A, B, C, delta_bias, delta_softplus)
        y0, last = scan.apply(*inp)
        y = finish(y0, inp.u, D, z)
    return (y, last) if return_last_state else y
