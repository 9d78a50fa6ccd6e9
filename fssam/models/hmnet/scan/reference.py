"""The selective scan as a plain per-token loop: the definition the fast scans are tested
against (README: HMNet)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _per_channel(m: Tensor, u: Tensor) -> Tensor:
    """B or C as (b, d, n, L): (d, n) is constant over tokens, (b, n, L) shared by all
    channels, (b, g, n, L) shared by groups of ``d // g`` consecutive channels."""
    batch, channels, length = u.shape
    if m.dim() == 2:
        return m[None, :, :, None].expand(batch, -1, -1, length)
    if m.dim() == 3:
        return m.unsqueeze(1).expand(-1, channels, -1, -1)
    groups = m.shape[1]
    if channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} groups")
    return m.repeat_interleave(channels // groups, dim=1)


def selective_scan_naive(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Tensor | None = None, z: Tensor | None = None,
                         delta_bias: Tensor | None = None, delta_softplus: bool = False,
                         return_last_state: bool = False
                         ) -> Tensor | tuple[Tensor, Tensor]:
    """``u``, ``delta`` (b, d, L); ``A`` (d, n); ``B``, ``C`` (d, n), (b, n, L) or (b, g, n, L);
    ``D`` (d,); ``z`` (b, d, L); ``delta_bias`` (d,). Zero initial state; per channel e,
    state n and token t::

        h[e, n] <- exp(dt[e, t] A[e, n]) h[e, n] + dt[e, t] B[n, t] u[e, t]
        y[e, t]  = sum_n C[n, t] h[e, n] + D[e] u[e, t]      (times silu(z[e, t]))

    Returns y (b, d, L) in float32, and the state after the last token (b, d, n) when
    ``return_last_state``.
    """
    u, delta, A = u.float(), delta.float(), A.float()
    d = u.shape[1]
    Bc, Cc = _per_channel(B.float(), u), _per_channel(C.float(), u)
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], d, A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * Bc[..., t] * u[:, :, t, None]
        ys.append((h * Cc[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.float()[:, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    return (y, h) if return_last_state else y
