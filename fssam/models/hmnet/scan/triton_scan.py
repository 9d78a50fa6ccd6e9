"""The selective scan as a Triton kernel (CUDA; on CPU under ``TRITON_INTERPRET=1``).

One program owns ``BLOCK_D`` channels of one sample and keeps their (BLOCK_D, n) state in
registers. It walks the sequence in tiles of ``BLOCK_L`` tokens: inside a tile the
recurrence ``h_t = a_t h_{t-1} + b_t`` is an associative scan over pairs ``(a, b)`` with
``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)`` (products only, so decays that underflow
give the exact limit 0), then the carried state is added with the tile's cumulative
decays. Tokens past the end load ``dt = 0`` and ``u = 0`` (decay 1, no input), so the
state passes through them unchanged.

Gradients: the kernel also writes the state at the start of every block of the PyTorch
scan's plan, and the backward pass is the PyTorch scan's (``torch_scan.scan_backward``),
which recomputes states block by block from them. Training on CUDA therefore runs this
kernel forward and the chunked PyTorch backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from fssam.models.hmnet.scan.common import run_scan
from fssam.models.hmnet.scan.torch_scan import _ChunkedScan, forward_for_backward, plan

BLOCK_D = 4
"""Channels per program."""


@triton.jit
def _combine(a_left, b_left, a_right, b_right):
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _scan_kernel(u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, y_ptr, last_ptr, starts_ptr,
                 length, channels, per_group, state, every, blocks,
                 s_ub, s_ud, s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl,
                 N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    batch = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N)
    d_ok, n_ok = d < channels, n < state
    dn_ok = d_ok[:, None] & n_ok[None, :]
    A = tl.load(a_ptr + d[:, None] * state + n[None, :], mask=dn_ok, other=0.0)
    group = d // per_group
    b_row = b_ptr + batch * s_bb + group[:, None, None] * s_bg + n[None, :, None] * s_bn
    c_row = c_ptr + batch * s_cb + group[:, None, None] * s_cg + n[None, :, None] * s_cn
    ud_row = batch * s_ub + d[:, None] * s_ud
    h = tl.zeros((BLOCK_D, N), dtype=tl.float32)
    for start in range(0, length, BLOCK_L):
        t = start + tl.arange(0, BLOCK_L)
        dl_ok = d_ok[:, None] & (t < length)[None, :]
        dnl_ok = dn_ok[:, :, None] & (t < length)[None, None, :]
        dt = tl.load(dt_ptr + ud_row + t[None, :], mask=dl_ok, other=0.0)
        u = tl.load(u_ptr + ud_row + t[None, :], mask=dl_ok, other=0.0)
        Bt = tl.load(b_row + t[None, None, :] * s_bl, mask=dnl_ok, other=0.0)
        Ct = tl.load(c_row + t[None, None, :] * s_cl, mask=dnl_ok, other=0.0)
        decay = tl.exp(dt[:, None, :] * A[:, :, None])
        cum, local = tl.associative_scan((decay, (dt * u)[:, None, :] * Bt), 2, _combine)
        states = local + cum * h[:, :, None]
        tl.store(y_ptr + ud_row + t[None, :], tl.sum(states * Ct, axis=1), mask=dl_ok)
        h = tl.sum(tl.where((tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, None, :], states, 0.0),
                   axis=2)
        end = start + BLOCK_L
        if every > 0:
            if (end % every == 0) & (end // every < blocks):
                tl.store(starts_ptr + (end // every) * (tl.num_programs(0) * state * channels)
                         + batch * state * channels + n[None, :] * channels + d[:, None],
                         h, mask=dn_ok)
    tl.store(last_ptr + batch * channels * state + d[:, None] * state + n[None, :], h,
             mask=dn_ok)


def scan_forward_triton(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                        keep_starts: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """Like ``torch_scan.scan_forward``: ``y0`` (b, d, L), last state (b, d, n) and, if
    asked, the state before each block of the PyTorch scan's plan (blocks, b, n, d)."""
    u, dt, A = u.contiguous(), dt.contiguous(), A.contiguous()
    batch, channels, length = u.shape
    state = A.shape[1]
    p = plan(batch, channels, state, length)
    block_l = 32 if p.block % 32 == 0 else 16
    y = torch.empty_like(u)
    last = u.new_empty(batch, channels, state)
    starts = u.new_zeros(p.blocks, batch, state, channels) if keep_starts else last
    grid = (batch, triton.cdiv(channels, BLOCK_D))
    _scan_kernel[grid](u, dt, A, B, C, y, last, starts, length, channels,
                       channels // B.shape[1], state, p.block if keep_starts else 0, p.blocks,
                       u.stride(0), u.stride(1), *B.stride(), *C.stride(),
                       N=max(triton.next_power_of_2(state), 2), BLOCK_D=BLOCK_D,
                       BLOCK_L=block_l)
    return y, last, starts if keep_starts else None


class _TritonScan(_ChunkedScan):
    """The Triton forward with the chunked PyTorch backward."""

    @staticmethod
    def forward(ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor
                ) -> tuple[Tensor, Tensor]:
        return forward_for_backward(ctx, scan_forward_triton, u, dt, A, B, C)


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Tensor | None = None, z: Tensor | None = None,
                          delta_bias: Tensor | None = None, delta_softplus: bool = False,
                          return_last_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``selective_scan`` (same arguments and results) by the Triton kernel; float32."""
    return run_scan(_TritonScan, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                    return_last_state)
