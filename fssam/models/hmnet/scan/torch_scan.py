"""The selective scan in plain PyTorch: chunked, vectorised, on any device.

The recurrence ``h_t = a_t h_{t-1} + x_t B_t`` (``a_t = exp(dt_t A)``, ``x_t = dt_t u_t``)
is computed block by block (``K`` tokens, sized so one work buffer holds about
``BLOCK_ELEMENTS`` floats). Inside a block the tokens are cut into ``M`` sub-chunks of
``T = SUBCHUNK`` tokens and laid out as (b, T, M, n, d), channels innermost so that every
broadcast runs over thousands of contiguous channels:

1. a loop over the T positions scans every sub-chunk at once from a zero state, and turns
   the decays into products from the sub-chunk's start (``a_1 ... a_t``);
2. a loop over the M sub-chunks carries the true state from one to the next;
3. one vectorised update adds each sub-chunk's start state times those products.

Only products of decays are formed (no division, no exponential of a cumulative sum), so
decays that underflow float32 give the exact limit 0. Python loops run ``T + M`` times
per block, never once per token. Extra memory: three work buffers plus a few copies of the
(b, d, L) inputs and output; about 1.1 GB at HMNet's largest call (b = 2, d = 2048,
n = 16, L = 12800). The backward pass (a custom autograd function) keeps
only the inputs and the state at each block's start, recomputes a block's states, and runs
the adjoint recurrence ``lambda_t = C_t g_t + a_{t+1} lambda_{t+1}`` with the same code on
the reversed block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from fssam.models.hmnet.scan.common import ScanInputs, no_autocast, run_scan

SUBCHUNK = 16
"""Tokens per sub-chunk (positions scanned one at a time, all sub-chunks together)."""
BLOCK_ELEMENTS = 1 << 22
"""Target size of one (b, K, n, d) work buffer, in elements (16 MiB in float32)."""


class Plan(NamedTuple):
    """Tokens per block (a multiple of ``subchunk``), number of blocks, padded length."""

    block: int
    blocks: int
    padded: int
    subchunk: int


def plan(batch: int, channels: int, state: int, length: int, subchunk: int = SUBCHUNK,
         budget: int = BLOCK_ELEMENTS) -> Plan:
    """Split ``length`` tokens into equal blocks of at most ~``budget`` buffer elements."""
    most = max(subchunk, budget // (batch * channels * state) // subchunk * subchunk)
    blocks = math.ceil(length / most)
    block = math.ceil(math.ceil(length / blocks) / subchunk) * subchunk
    return Plan(block=block, blocks=blocks, padded=block * blocks, subchunk=subchunk)


class Workspace(NamedTuple):
    """Buffers of one block in the (b, T, M, n, d) layout, reused by every block."""

    decay: Tensor
    states: Tensor
    starts: Tensor

    @classmethod
    def new(cls, like: Tensor, channels: int, state: int, p: Plan) -> Workspace:
        shape = (like.shape[0], p.subchunk, p.block // p.subchunk, state, channels)
        return cls(decay=like.new_empty(shape), states=like.new_empty(shape),
                   starts=like.new_empty(shape[0], 1, *shape[2:]))


def _token_major(x: Tensor, length: int) -> Tensor:
    """(b, c, L) -> (b, P, c) and (b, g, n, L) -> (b, P, n, g), contiguous, zero-padded
    to ``length`` = P tokens."""
    if x.dim() == 4:
        return F.pad(x, (0, length - x.shape[-1])).permute(0, 3, 2, 1).contiguous()
    out = x.new_zeros(x.shape[0], length, x.shape[1]) if length > x.shape[-1] else \
        x.new_empty(x.shape[0], length, x.shape[1])
    for i in range(x.shape[0]):  # 2-D copies take PyTorch's cache-blocked transpose
        out[i, :x.shape[-1]].copy_(x[i].t())
    return out


def _channel_major(x: Tensor, length: int) -> Tensor:
    """(b, P, c) -> (b, c, length): the first ``length`` tokens, contiguous."""
    out = x.new_empty(x.shape[0], x.shape[2], length)
    for i in range(x.shape[0]):
        out[i].copy_(x[i, :length].t())
    return out


def _tokens(x: Tensor, subchunk: int) -> Tensor:
    """(b, K, ...) -> (b, T, M, ...) view: token m*T + t at [:, t, m]."""
    return x.unflatten(1, (x.shape[1] // subchunk, subchunk)).transpose(1, 2)


def scan_block(dt: Tensor, x: Tensor, At: Tensor, Bm: Tensor, h0: Tensor, ws: Workspace
               ) -> Tensor:
    """States of one block of tokens ``dt``, ``x`` (b, K, d), ``Bm`` (b, K, n, g) from ``h0``
    (b, n, d), with ``At`` = A transposed (n, d), written to ``ws.states``; ``ws.decay``
    then holds the decay from each sub-chunk's start to each token and ``ws.starts`` the
    state before each sub-chunk. Returns the state after the block."""
    decay, states, starts = ws.decay, ws.states, ws.starts
    subchunk, chunks = states.shape[1:3]
    groups = Bm.shape[-1]
    torch.mul(_tokens(dt, subchunk)[..., None, :], At, out=decay)
    decay.exp_()
    torch.mul(_tokens(x, subchunk).unflatten(-1, (groups, -1))[..., None, :, :],
              _tokens(Bm, subchunk)[..., None], out=states.unflatten(-1, (groups, -1)))
    for t in range(1, subchunk):
        states[:, t].addcmul_(decay[:, t], states[:, t - 1])
        decay[:, t].mul_(decay[:, t - 1])
    h = h0
    for m in range(chunks):
        starts[:, 0, m] = h
        h = torch.addcmul(states[:, -1, m], decay[:, -1, m], h)
    states.addcmul_(decay, starts)
    return h


def _contract_state(h: Tensor, w: Tensor, out: Tensor) -> None:
    """``out[..., g, e] = sum_n h[..., n, g, e] w[..., n, g]`` with h (b, T, M, n, d), w
    (..., n, g) for g groups of d // g channels, out (b, T, M, d) (a view is fine)."""
    groups = w.shape[-1]
    out, h = out.unflatten(-1, (groups, -1)), h.unflatten(-1, (groups, -1))
    torch.mul(h[:, :, :, 0], w[..., 0, :, None], out=out)
    for k in range(1, h.shape[3]):
        out.addcmul_(h[:, :, :, k], w[..., k, :, None])


def _contract_channels(h: Tensor, v: Tensor, out: Tensor) -> None:
    """``out[..., n, g] = sum_e h[..., n, g, e] v[..., g, e]`` with h (b, T, M, n, d), v
    (b, T, M, d), out (b, T, M, n, g) for g groups of d // g channels."""
    groups = out.shape[-1]
    h, v = h.unflatten(-1, (groups, -1)), v.unflatten(-1, (groups, -1))
    for j in range(groups):
        out[..., j] = torch.matmul(h[..., j, :], v[..., j, :, None]).squeeze(-1)


def scan_forward(inp: ScanInputs, keep_starts: bool = False
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``y0 = C h`` (b, d, L), the last state (b, d, n) and, if asked, the state before
    each block (blocks, b, n, d)."""
    u, dt, A, B, C = inp
    batch, channels, length = u.shape
    p = plan(batch, channels, A.shape[1], length)
    x, dt = _token_major(dt * u, p.padded), _token_major(dt, p.padded)
    B, C, At = _token_major(B, p.padded), _token_major(C, p.padded), A.t().contiguous()
    ws = Workspace.new(u, channels, A.shape[1], p)
    y = u.new_empty(batch, p.padded, channels)
    h = u.new_zeros(batch, A.shape[1], channels)
    starts = []
    for i in range(p.blocks):
        sl = slice(i * p.block, (i + 1) * p.block)
        if keep_starts:
            starts.append(h)
        h = scan_block(dt[:, sl], x[:, sl], At, B[:, sl], h, ws)
        _contract_state(ws.states, _tokens(C[:, sl], p.subchunk), _tokens(y[:, sl], p.subchunk))
    y = _channel_major(y, length)
    return y, h.transpose(1, 2).contiguous(), torch.stack(starts) if keep_starts else None


def _block_grads(fwd: Workspace, lam: Tensor, dt: Tensor, x: Tensor, gy: Tensor, At: Tensor,
                 Bm: Tensor, out: dict[str, Tensor]) -> Tensor:
    """Gradients of one block (token-major ``dt``, ``x``, ``gy`` (b, K, d), ``Bm``
    (b, K, n, g)) from its states (``fwd``, just recomputed) and adjoint states ``lam``
    (b, T, M, n, d): those with respect to x, dt (through the decays), B and C go to the
    block's views in ``out``; the one with respect to A (transposed, (n, d)) is returned.
    ``lam`` and ``fwd.decay`` are overwritten."""
    subchunk = lam.shape[1]
    _contract_channels(fwd.states, _tokens(gy, subchunk), _tokens(out["C"], subchunk))
    _contract_channels(lam, _tokens(x, subchunk), _tokens(out["B"], subchunk))
    _contract_state(lam, _tokens(Bm, subchunk), _tokens(out["x"], subchunk))
    # q_t = lambda_t a_t h_{t-1}: the gradient with respect to dt_t A
    dt_tok = _tokens(dt, subchunk)
    torch.mul(dt_tok[..., None, :], At, out=fwd.decay)
    q = lam.mul_(fwd.decay.exp_())
    q[:, 1:].mul_(fwd.states[:, :-1])
    q[:, 0].mul_(fwd.starts[:, 0])
    _contract_state(q, At, _tokens(out["dt"], subchunk))
    return q.mul_(dt_tok[..., None, :]).sum((0, 1, 2))


def scan_backward(inp: ScanInputs, starts: Tensor, grad_y: Tensor, grad_last: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients with respect to ``inp`` (u, dt, A, B, C) given those of ``y0`` and of the
    last state, block by block from the end."""
    u, dt, A, B, C = inp
    batch, channels, length = u.shape
    p = plan(batch, channels, A.shape[1], length)
    x, dt_tok = _token_major(dt * u, p.padded), _token_major(dt, p.padded)
    dt_next = F.pad(dt_tok[:, 1:], (0, 0, 0, 1))  # a_{t+1}; no decay after the last token
    Bt, Ct, At = _token_major(B, p.padded), _token_major(C, p.padded), A.t().contiguous()
    grad_y = _token_major(grad_y, p.padded)
    fwd = Workspace.new(u, channels, A.shape[1], p)
    adj = Workspace.new(u, channels, A.shape[1], p)
    grads = {"x": torch.empty_like(x), "dt": torch.empty_like(x),
             "B": torch.empty_like(Bt), "C": torch.empty_like(Ct)}
    grad_a = torch.zeros_like(At)
    lam = grad_last.transpose(1, 2).contiguous()
    for i in reversed(range(p.blocks)):
        sl = slice(i * p.block, (i + 1) * p.block)
        scan_block(dt_tok[:, sl], x[:, sl], At, Bt[:, sl], starts[i], fwd)
        lam = scan_block(dt_next[:, sl].flip(1), grad_y[:, sl].flip(1), At,
                         Ct[:, sl].flip(1), lam, adj)
        grad_a += _block_grads(fwd, adj.states.flip(1, 2), dt_tok[:, sl], x[:, sl],
                               grad_y[:, sl], At, Bt[:, sl],
                               {k: v[:, sl] for k, v in grads.items()})
    grad_x, grad_dt = (_channel_major(grads[k], length) for k in ("x", "dt"))
    grad_b, grad_c = (grads[k][:, :length].permute(0, 3, 2, 1) for k in ("B", "C"))
    return grad_x * dt, grad_x * u + grad_dt, grad_a.t(), grad_b, grad_c


def forward_for_backward(ctx: Any, scan: Callable[..., tuple[Tensor, Tensor, Tensor | None]],
                         u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor
                         ) -> tuple[Tensor, Tensor]:
    """An autograd forward by ``scan(u, dt, A, B, C, keep_starts=...)`` (returning y0, the
    last state and the chunk starts), saving what ``_ChunkedScan.backward`` needs."""
    keep = any(ctx.needs_input_grad)
    y, h, starts = scan(u, dt, A, B, C, keep_starts=keep)
    if keep:
        ctx.save_for_backward(u, dt, A, B, C, starts)
    return y, h


def _scan_forward(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                  keep_starts: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """``scan_forward`` with the inputs as separate arguments."""
    return scan_forward(ScanInputs(u=u, dt=dt, A=A, B=B, C=C), keep_starts=keep_starts)


class _ChunkedScan(torch.autograd.Function):
    """(u, dt, A, B, C) -> (y0, last state) with the hand-written backward above."""

    @staticmethod
    def forward(ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor
                ) -> tuple[Tensor, Tensor]:
        return forward_for_backward(ctx, _scan_forward, u, dt, A, B, C)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor, grad_last: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        u, dt, A, B, C, starts = ctx.saved_tensors
        with no_autocast(u.device):
            return scan_backward(ScanInputs(u=u, dt=dt, A=A, B=B, C=C), starts,
                                 grad_y.float(), grad_last.float())


def selective_scan_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Tensor | None = None, z: Tensor | None = None,
                         delta_bias: Tensor | None = None, delta_softplus: bool = False,
                         return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``selective_scan`` (same arguments and results) by the chunked scan; float32."""
    return run_scan(_ChunkedScan, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                    return_last_state)
