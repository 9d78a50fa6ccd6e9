"""The selective scan in plain PyTorch: chunked, vectorised, on any device.

The recurrence ``h_t = a_t h_{t-1} + x_t B_t`` (``a_t = exp(dt_t A)``, ``x_t = dt_t u_t``)
is computed block by block (``K`` tokens, sized so one work buffer holds about
``BLOCK_ELEMENTS`` floats). Inside a block the tokens are cut into ``M`` sub-chunks of
``T = SUBCHUNK`` tokens and laid out as (b, T, M, d, n):

1. a loop over the T positions scans every sub-chunk at once from a zero state, and turns
   the decays into products from the sub-chunk's start (``a_1 ... a_t``);
2. a loop over the M sub-chunks carries the true state from one to the next;
3. one vectorised update adds each sub-chunk's start state times those products.

Only products of decays are formed (no division, no exponential of a cumulative sum), so
decays that underflow float32 give the exact limit 0. Python loops run ``T + M`` times
per block, never once per token. The backward pass (a custom autograd function) keeps
only the inputs and the state at each block's start, recomputes a block's states, and runs
the adjoint recurrence ``lambda_t = C_t g_t + a_{t+1} lambda_{t+1}`` with the same code on
the reversed block.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from fssam.models.hmnet.scan.common import (ScanInputs, check_arguments, finish,
                                            no_autocast, prepare)

SUBCHUNK = 16
"""Tokens per sub-chunk (positions scanned one at a time, all sub-chunks together)."""
BLOCK_ELEMENTS = 1 << 22
"""Target size of one (b, K, d, n) work buffer, in elements (16 MiB in float32)."""


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
    """Buffers of one block in the (b, T, M, d, n) layout, reused by every block."""

    decay: Tensor
    states: Tensor
    starts: Tensor

    @classmethod
    def new(cls, like: Tensor, channels: int, state: int, p: Plan) -> Workspace:
        shape = (like.shape[0], p.subchunk, p.block // p.subchunk, channels, state)
        return cls(decay=like.new_empty(shape), states=like.new_empty(shape),
                   starts=like.new_empty(shape[0], 1, *shape[2:]))


def _tokens(x: Tensor, subchunk: int) -> Tensor:
    """(b, c, K) -> (b, T, M, c) view: token m*T + t at [:, t, m]."""
    return x.unflatten(-1, (x.shape[-1] // subchunk, subchunk)).permute(0, 3, 2, 1)


def _untokens(x: Tensor) -> Tensor:
    """(b, T, M, c) -> (b, c, M*T), the inverse of ``_tokens``."""
    return x.permute(0, 3, 2, 1).flatten(2)


def _group_tokens(m: Tensor, subchunk: int) -> Tensor:
    """(b, g, n, K) -> (b, T, M, g, 1, n) view."""
    return m.unflatten(-1, (m.shape[-1] // subchunk, subchunk)).permute(0, 4, 3, 1, 2)[..., None, :]


def _group_untokens(m: Tensor) -> Tensor:
    """(b, T, M, g, 1, n) -> (b, g, n, M*T), the inverse of ``_group_tokens``."""
    return m.squeeze(-2).permute(0, 3, 4, 2, 1).flatten(3)


def scan_block(dt: Tensor, x: Tensor, A: Tensor, Bm: Tensor, h0: Tensor, ws: Workspace) -> Tensor:
    """States of one block of tokens ``dt``, ``x`` (b, d, K), ``Bm`` (b, g, n, K) from ``h0``
    (b, d, n), written to ``ws.states``; ``ws.decay`` then holds the decay from each
    sub-chunk's start to each token and ``ws.starts`` the state before each sub-chunk.
    Returns the state after the block."""
    decay, states, starts = ws.decay, ws.states, ws.starts
    subchunk, chunks, channels = states.shape[1:4]
    groups = Bm.shape[1]
    torch.mul(_tokens(dt, subchunk)[..., None], A, out=decay)
    decay.exp_()
    torch.mul(_tokens(x, subchunk).unflatten(-1, (groups, -1))[..., None],
              _group_tokens(Bm, subchunk), out=states.unflatten(3, (groups, -1)))
    for t in range(1, subchunk):
        states[:, t].addcmul_(decay[:, t], states[:, t - 1])
        decay[:, t].mul_(decay[:, t - 1])
    h = h0
    for m in range(chunks):
        starts[:, 0, m] = h
        h = torch.addcmul(states[:, -1, m], decay[:, -1, m], h)
    states.addcmul_(decay, starts)
    return h


def _readout(states: Tensor, Cm: Tensor) -> Tensor:
    """``sum_n C h`` of a block: states (b, T, M, d, n), Cm (b, g, n, K) -> (b, d, K)."""
    groups = Cm.shape[1]
    y = torch.matmul(states.unflatten(3, (groups, -1)),
                     _group_tokens(Cm, states.shape[1]).transpose(-1, -2))
    return _untokens(y.flatten(3))


def _pad(x: Tensor, length: int) -> Tensor:
    return x if x.shape[-1] == length else F.pad(x, (0, length - x.shape[-1]))


def scan_forward(inp: ScanInputs, keep_starts: bool = False
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``y0 = C h`` (b, d, L), the last state (b, d, n) and, if asked, the state before
    each block (blocks, b, d, n)."""
    u, dt, A, B, C = inp
    batch, channels, length = u.shape
    p = plan(batch, channels, A.shape[1], length)
    dt, x = _pad(dt, p.padded), _pad(dt * u, p.padded)
    B, C = _pad(B, p.padded), _pad(C, p.padded)
    ws = Workspace.new(u, channels, A.shape[1], p)
    y = u.new_empty(batch, channels, p.padded)
    h = u.new_zeros(batch, channels, A.shape[1])
    starts = []
    for i in range(p.blocks):
        sl = slice(i * p.block, (i + 1) * p.block)
        if keep_starts:
            starts.append(h)
        h = scan_block(dt[..., sl], x[..., sl], A, B[..., sl], h, ws)
        y[..., sl] = _readout(ws.states, C[..., sl])
    return y[..., :length], h, torch.stack(starts) if keep_starts else None


def _block_grads(fwd: Workspace, lam: Tensor, dt: Tensor, x: Tensor, gy: Tensor, A: Tensor,
                 Bm: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of one block from its states (``fwd``, just recomputed) and adjoint
    states ``lam`` (both (b, T, M, d, n)): with respect to x, dt (through the decay only),
    B, C (b, g, n, K) and A. ``lam`` and ``fwd.decay`` are overwritten."""
    subchunk, groups = lam.shape[1], Bm.shape[1]
    h, lam_g = fwd.states.unflatten(3, (groups, -1)), lam.unflatten(3, (groups, -1))
    gy_row = _tokens(gy, subchunk).unflatten(-1, (groups, -1))[..., None, :]
    x_row = _tokens(x, subchunk).unflatten(-1, (groups, -1))[..., None, :]
    grad_c = _group_untokens(torch.matmul(gy_row, h))
    grad_b = _group_untokens(torch.matmul(x_row, lam_g))
    grad_x = _untokens(torch.matmul(lam_g, _group_tokens(Bm, subchunk).transpose(-1, -2)
                                    ).flatten(3))
    # lambda_t a_t h_{t-1}: the gradient with respect to dt_t A
    dt_tok = _tokens(dt, subchunk)
    torch.mul(dt_tok[..., None], A, out=fwd.decay)
    q = lam.mul_(fwd.decay.exp_())
    q[:, 1:].mul_(fwd.states[:, :-1])
    q[:, 0].mul_(fwd.starts[:, 0])
    grad_a = torch.einsum("btmdn,btmd->dn", q, dt_tok)
    grad_dt = _untokens(torch.einsum("btmdn,dn->btmd", q, A))
    return grad_x, grad_dt, grad_b, grad_c, grad_a


def scan_backward(inp: ScanInputs, starts: Tensor, grad_y: Tensor, grad_last: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients with respect to ``inp`` (u, dt, A, B, C) given those of ``y0`` and of the
    last state, block by block from the end."""
    u, dt, A, B, C = inp
    batch, channels, length = u.shape
    p = plan(batch, channels, A.shape[1], length)
    x, dt_pad = _pad(dt * u, p.padded), _pad(dt, p.padded)
    dt_next = F.pad(dt_pad[..., 1:], (0, 1))  # a_{t+1}; no decay after the last token
    B, C, grad_y = _pad(B, p.padded), _pad(C, p.padded), _pad(grad_y, p.padded)
    fwd = Workspace.new(u, channels, A.shape[1], p)
    adj = Workspace.new(u, channels, A.shape[1], p)
    grad_x, grad_dt = torch.empty_like(x), torch.empty_like(x)
    grad_b, grad_c = B.new_empty(B.shape), C.new_empty(C.shape)
    grad_a = torch.zeros_like(A)
    lam = grad_last
    for i in reversed(range(p.blocks)):
        sl = slice(i * p.block, (i + 1) * p.block)
        scan_block(dt_pad[..., sl], x[..., sl], A, B[..., sl], starts[i], fwd)
        lam = scan_block(dt_next[..., sl].flip(-1), grad_y[..., sl].flip(-1), A,
                         C[..., sl].flip(-1), lam, adj)
        gx, gdt, gb, gc, ga = _block_grads(fwd, adj.states.flip(1, 2), dt_pad[..., sl],
                                           x[..., sl], grad_y[..., sl], A, B[..., sl])
        grad_x[..., sl], grad_dt[..., sl], grad_b[..., sl], grad_c[..., sl] = gx, gdt, gb, gc
        grad_a += ga
    grad_x, grad_dt = grad_x[..., :length], grad_dt[..., :length]
    return (grad_x * dt, grad_x * u + grad_dt, grad_a, grad_b[..., :length],
            grad_c[..., :length])


class _ChunkedScan(torch.autograd.Function):
    """(u, dt, A, B, C) -> (y0, last state) with the hand-written backward above."""

    @staticmethod
    def forward(ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor
                ) -> tuple[Tensor, Tensor]:
        keep = any(ctx.needs_input_grad)
        y, h, starts = scan_forward(ScanInputs(u=u, dt=dt, A=A, B=B, C=C), keep_starts=keep)
        if keep:
            ctx.save_for_backward(u, dt, A, B, C, starts)
        return y, h

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
    check_arguments(u, delta, A, B, C, D, z, delta_bias)
    with no_autocast(u.device):
        inp = prepare(u, delta, A, B, C, delta_bias, delta_softplus)
        y0, last = _ChunkedScan.apply(*inp)
        y = finish(y0, inp.u, D, z)
    return (y, last) if return_last_state else y
