"""SS2D of HMNet's Mamba stack (README: HMNet): the self core and the hybrid core.

One ``SS2D`` serves one block: its scan parameters (``x_proj_weight``, ``dt_projs_weight``,
``dt_projs_bias``, ``A_logs``, ``Ds``) and ``out_norm`` are shared by the query and the support
branch; ``in_proj``, the depthwise conv and ``out_proj`` exist per branch (``_q`` / ``_s``).
Token orders are index tensors built once for the grid, so every scan reads and writes its
sequences with one gather (no loop over tokens or windows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fssam.models.hmnet.scan import selective_scan

DIRECTIONS = 4
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4


def resize(x: Tensor, side: int) -> Tensor:
    """Bilinear resize with ``align_corners=True`` (the model's only interpolation)."""
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=True)


def self_orders(side: int) -> Tensor:
    """Raster index of the pixel read at each step of the 4 self directions (4, side²):
    row-major, column-major, and both reversed."""
    grid = torch.arange(side * side).view(side, side)
    row, col = grid.flatten(), grid.t().flatten()
    return torch.stack([row, col, row.flip(0), col.flip(0)])


def hybrid_orders(side: int, ratio: int) -> Tensor:
    """Token read at each step of the 4 support-recapped sequences (4, 2·side²).

    Values below side² are query pixels (raster index); side² + j is token j (raster index
    on the side/ratio grid) of the downsampled support. Every query window is preceded by a
    whole copy of the support; direction 1 reads windows, pixels and support column-major;
    directions 2 / 3 reverse the query part of 0 / 1 as a whole (then cut it into windows
    again) and the support.
    """
    win = side // ratio
    grid = torch.arange(side * side).view(ratio, win, ratio, win)  # I, a, J, c
    q_row = grid.permute(0, 2, 1, 3).flatten()                     # windows I·r+J, pixels a·s+c
    q_col = grid.permute(2, 0, 3, 1).flatten()                     # windows J·r+I, pixels c·s+a
    support = torch.arange(win * win).view(win, win) + side * side
    s_row, s_col = support.flatten(), support.t().flatten()
    windows = torch.stack([q_row, q_col, q_row.flip(0), q_col.flip(0)])
    windows = windows.view(DIRECTIONS, ratio * ratio, win * win)
    recaps = torch.stack([s_row, s_col, s_row.flip(0), s_col.flip(0)])[:, None]
    return torch.cat([recaps.expand_as(windows), windows], dim=2).flatten(1)


def _steps(order: Tensor, first: int, count: int) -> Tensor:
    """Step at which each token ``first + i`` (i < count) is first read, per direction
    (4, count): query pixels are read once, the support tokens' first reads are the first
    recap."""
    picked = (order >= first) & (order < first + count)
    first_reads = picked & (picked.cumsum(1) <= count)
    tokens = (order[first_reads] - first).view(len(order), count)
    steps = torch.arange(order.shape[1]).expand_as(order)[first_reads].view(len(order), count)
    return torch.empty_like(steps).scatter_(1, tokens, steps)


def _read(y: Tensor, steps: Tensor) -> Tensor:
    """Outputs (b, 4, d, L) at ``steps`` (4, n) of each direction, summed over directions."""
    index = steps[None, :, None, :].expand(y.shape[0], -1, y.shape[2], -1)
    return y.gather(-1, index).sum(1)


def query_intercepted_step(h: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                           C: Tensor, D: Tensor, delta_bias: Tensor) -> Tensor:
    """One scan step from state ``h`` for every token independently (the QIM).

    ``h`` (b, d, N), ``u`` / ``delta`` (b, d, L) with delta raw (bias and softplus applied
    here), ``A`` (d, N), ``B`` / ``C`` (b, N, L), ``D`` (d,) or (1,), ``delta_bias`` (d,)::

        y[e, t] = Σ_n C[n, t] (exp(Δ[e, t] A[e, n]) h[e, n] + Δ[e, t] B[n, t] u[e, t])
                  + D[e] u[e, t]
    """
    h, u, A, B, C = h.float(), u.float(), A.float(), B.float(), C.float()
    delta = F.softplus(delta.float() + delta_bias.float()[:, None])
    decay = torch.exp(delta[..., None] * A[:, None, :])                 # (b, d, L, N)
    carried = torch.einsum("bdln,bdn,bnl->bdl", decay, h, C)
    injected = delta * u * (B * C).sum(1, keepdim=True)
    return carried + injected + D.float()[:, None] * u


class SS2D(nn.Module):
    """2-D selective scan of one block for a query and a support map (channels-last).

    ``hybrid=False``: the self core on each branch separately. ``hybrid=True``: the
    support-recapped scan (SRM) over [support | query window] × r², the support state
    ``h̄`` (no gradient) and the query-intercepted step (QIM); the query gets
    SRM + up(QIM), the support up(its first recap's outputs). ``qim_per_channel_d`` makes
    the QIM use ``Ds[0:d_inner]`` instead of the release's scalar ``Ds[0]`` (as the release).
    """

    def __init__(self, *, dim: int, d_inner: int, d_state: int, dt_rank: int,
                 grid_size: int, ratio: int, hybrid: bool, qim_per_channel_d: bool = False
                 ) -> None:
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.grid_size, self.window = grid_size, grid_size // ratio
        self.hybrid, self.qim_per_channel_d = hybrid, qim_per_channel_d
        k = DIRECTIONS
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.in_proj_q = nn.Linear(dim, 2 * d_inner, bias=False)
        self.in_proj_s = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d_q = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner)
        self.conv2d_s = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj_q = nn.Linear(d_inner, dim, bias=False)
        self.out_proj_s = nn.Linear(d_inner, dim, bias=False)
        self._init_parameters()
        pixels, tokens = grid_size ** 2, self.window ** 2
        order = hybrid_orders(grid_size, ratio) if hybrid else self_orders(grid_size)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("query_steps", _steps(order, 0, pixels), persistent=False)
        if hybrid:
            self.register_buffer("support_steps", _steps(order, pixels, tokens),
                                 persistent=False)

    def _init_parameters(self) -> None:
        """The release's initialisation for training from scratch; convs keep PyTorch's."""
        k, d = DIRECTIONS, self.d_inner
        nn.init.uniform_(self.x_proj_weight, -d ** -0.5, d ** -0.5)
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        with torch.no_grad():
            log_dt = torch.rand(k, d) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN)
            dt = torch.exp(log_dt).clamp(min=DT_FLOOR)
            self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))   # softplus⁻¹(dt)
            states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
            self.A_logs.copy_(torch.log(states).expand(k * d, -1))
            self.Ds.fill_(1.0)
        for linear in (self.in_proj_q, self.in_proj_s, self.out_proj_q, self.out_proj_s):
            nn.init.trunc_normal_(linear.weight, std=0.02)

    def forward(self, query: Tensor, support: Tensor, *, need_support: bool = True
                ) -> tuple[Tensor, Tensor | None]:
        """(b, S, S, dim) each -> (dq, ds), ds None when ``need_support`` is False."""
        uq, zq = self.branch_input(query, self.in_proj_q, self.conv2d_q)
        zs = None
        if self.hybrid:
            us, zs = self.branch_input(support, self.in_proj_s, self.conv2d_s)
            yq, ys = self.hybrid_core(uq, us, need_support=need_support)
        elif need_support:
            us, zs = self.branch_input(support, self.in_proj_s, self.conv2d_s)
            yq, ys = self.self_core(torch.cat([uq, us])).chunk(2)   # one scan call for both
        else:
            yq, ys = self.self_core(uq), None
        dq = self._finish(yq, zq, self.out_proj_q)
        return dq, (self._finish(ys, zs, self.out_proj_s) if ys is not None else None)

    @staticmethod
    def branch_input(x: Tensor, in_proj: nn.Linear, conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
        """in_proj, split into x / gate z, depthwise conv + SiLU: u (b, d, S, S), z (b, S, S, d)."""
        x, z = in_proj(x).chunk(2, dim=-1)
        return F.silu(conv(x.permute(0, 3, 1, 2).contiguous())), z

    def _finish(self, y: Tensor, z: Tensor, out_proj: nn.Linear) -> Tensor:
        """Core output (b, d, S²) row-major -> out_proj(out_norm(y) · SiLU(z)) (b, S, S, dim)."""
        y = y.transpose(1, 2).reshape(z.shape)
        return out_proj(self.out_norm(y) * F.silu(z))

    def _projections(self, seq: Tensor, x_proj: Tensor, dt_proj: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """Raw Δ (b, k, d, L), B and C (b, k, N, L) of sequences (b, k, d, L)."""
        xd = torch.einsum("bkdl,kcd->bkcl", seq, x_proj)
        dt, B, C = torch.split(xd, [self.dt_rank, self.d_state, self.d_state], dim=2)
        return torch.einsum("bkrl,kdr->bkdl", dt, dt_proj), B, C

    def _scan(self, seq: Tensor, dt: Tensor, B: Tensor, C: Tensor,
              return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """One selective-scan call over the 4 directions, in float32: y (b, 4·d, L)."""
        b, k, d, length = seq.shape
        return selective_scan(
            seq.float().reshape(b, k * d, length), dt.float().reshape(b, k * d, length),
            -torch.exp(self.A_logs.float()), B.float(), C.float(), self.Ds.float(),
            z=None, delta_bias=self.dt_projs_bias.float().flatten(), delta_softplus=True,
            return_last_state=return_last_state)

    def _directions(self, source: Tensor) -> Tensor:
        """Tokens (b, d, n) -> the 4 direction sequences (b, 4, d, L) read by ``order``."""
        return source[:, :, self.order].transpose(1, 2)

    def self_core(self, u: Tensor) -> Tensor:
        """u (b, d, S, S) -> y (b, d, S²) row-major: the 4 directions mapped back and summed."""
        seq = self._directions(u.flatten(2))
        y = self._scan(seq, *self._projections(seq, self.x_proj_weight, self.dt_projs_weight))
        return _read(y.view(seq.shape), self.query_steps)

    def hybrid_core(self, uq: Tensor, us: Tensor, *, need_support: bool = True
                    ) -> tuple[Tensor, Tensor | None]:
        """uq, us (b, d, S, S) -> y_q (b, d, S²) and y_s (b, d, S²) (None unless needed)."""
        q_small, s_small = resize(uq, self.window), resize(us, self.window)
        seq = self._directions(torch.cat([uq.flatten(2), s_small.flatten(2)], dim=2))
        dt, B, C = self._projections(seq, self.x_proj_weight, self.dt_projs_weight)
        y = self._scan(seq, dt, B, C).view(seq.shape)
        y_qim = self._intercept(q_small, self._support_state(seq, dt, B, C))
        y_q = _read(y, self.query_steps) + resize(y_qim.view_as(q_small),
                                                  self.grid_size).flatten(2)
        if not need_support:
            return y_q, None
        y_s = _read(y, self.support_steps).view_as(s_small)
        return y_q, resize(y_s, self.grid_size).flatten(2)

    @torch.no_grad()
    def _support_state(self, seq: Tensor, dt: Tensor, B: Tensor, C: Tensor) -> Tensor:
        """h̄ (b, d, N): state after the first support recap (a scan of only those tokens),
        averaged over the 4 directions; no gradient flows through it."""
        n = self.window ** 2
        _, h = self._scan(seq[..., :n], dt[..., :n], B[..., :n], C[..., :n],
                          return_last_state=True)
        return h.view(seq.shape[0], DIRECTIONS, self.d_inner, -1).mean(1)

    def _intercept(self, q_small: Tensor, h: Tensor) -> Tensor:
        """QIM on the downsampled query (b, d, s, s), row-major, with direction 0's
        parameters: every token one step from ``h`` -> (b, d, s²)."""
        u = q_small.flatten(2)
        dt, B, C = self._projections(u[:, None], self.x_proj_weight[:1],
                                     self.dt_projs_weight[:1])
        d = self.d_inner
        D = self.Ds[:d] if self.qim_per_channel_d else self.Ds[:1]   # Q1: scalar Ds[0]
        return query_intercepted_step(h, u, dt[:, 0], -torch.exp(self.A_logs[:d].float()),
                                      B[:, 0], C[:, 0], D, self.dt_projs_bias[0])
