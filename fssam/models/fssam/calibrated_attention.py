"""Support-Calibrated Memory Attention (SCMA, README: The model).

``CalibratedRoPEAttention`` takes the place of the cross-attention of each SAM 2
memory-attention layer. It adopts that layer's own projection modules and RoPE tables (the
state-dict keys do not change) and is a ``RoPEAttention`` so SAM 2's layers keep passing
``num_k_exclude_rope`` to it. Without a ``Calibration`` it computes exactly SAM 2's attention.
"""

from __future__ import annotations

import math
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sam2.modeling.position_encoding import apply_rotary_enc
from sam2.modeling.sam.transformer import RoPEAttention
from torch import Tensor, nn

from fssam.models.fssam.memory_refine import cosine, masked_average, minmax

BIAS_SCALE = 10.0


@dataclass
class Calibration:
    """What the calibration needs for one call.

    ``support_masks`` (b, K, N): support masks on the memory grid (nearest), flattened.
    The bank holds the K support memories first, then the query memory. ``legacy_kshot``
    reproduces the authors' release: only the first mask is used, bank block 1 is taken
    as the query memory and supports are not averaged (identical to the default for K=1).
    ``fp32``: the attention logits, their bias and the softmax run in float32 even under
    autocast; False computes them in the autocast dtype, as the release does.
    """

    support_masks: Tensor
    legacy_kshot: bool = False
    fp32: bool = False


class CalibratedRoPEAttention(RoPEAttention):
    """SAM 2 RoPE cross-attention with the support-calibrated bias on the query memory."""

    def __init__(self, base: RoPEAttention) -> None:
        nn.Module.__init__(self)  # adopt ``base``'s modules instead of creating new ones
        for name in ("embedding_dim", "kv_in_dim", "internal_dim", "num_heads", "dropout_p",
                     "compute_cis", "freqs_cis", "rope_k_repeat"):
            setattr(self, name, getattr(base, name))
        self.q_proj, self.k_proj = base.q_proj, base.k_proj
        self.v_proj, self.out_proj = base.v_proj, base.out_proj
        self.calibration: Calibration | None = None
        self.train(base.training)

    def _rope(self, q: Tensor, k: Tensor, num_k_exclude_rope: int) -> tuple[Tensor, Tensor]:
        """RoPE on q and on every key but the last ``num_k_exclude_rope`` (as SAM 2 does)."""
        side = math.sqrt(q.shape[-2])
        self.freqs_cis = self.freqs_cis.to(q.device)
        if self.freqs_cis.shape[0] != q.shape[-2]:
            self.freqs_cis = self.compute_cis(end_x=side, end_y=side).to(q.device)
        num_rope = k.shape[-2] - num_k_exclude_rope
        q, k_rope = apply_rotary_enc(q, k[:, :, :num_rope], freqs_cis=self.freqs_cis,
                                     repeat_freqs_k=self.rope_k_repeat)
        return q, torch.cat([k_rope, k[:, :, num_rope:]], dim=2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        if self.calibration is None:
            return super().forward(q, k, v, num_k_exclude_rope)
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        q, k = self._rope(q, k, num_k_exclude_rope)
        k, v, score = calibrate(q, k, v, self.calibration)
        out = calibrated_attention(q, k, v, score, dropout_p=self.dropout_p if self.training else 0,
                                   fp32=self.calibration.fp32)
        return self.out_proj(self._recombine_heads(out.to(q.dtype)))


def calibrate(q: Tensor, k: Tensor, v: Tensor, cal: Calibration) -> tuple[Tensor, Tensor, Tensor]:
    """Calibration of one cross-attention call, on heads-split tensors after RoPE.

    ``q`` (b, heads, N, d); ``k``, ``v`` (b, heads, T, d) with the bank
    ``[support_1..support_K, query memory, pointers]``. Returns the keys and values with the
    supports averaged into one block (default mode), so that the query memory is block
    ``N:2N``, and ``ĉ`` (b, heads, N), the support score of each query-memory key.
    """
    n = q.shape[-2]
    masks = cal.support_masks[:, :1] if cal.legacy_kshot else cal.support_masks
    shots = masks.shape[1]
    k_sup = k[:, :, :shots * n].unflatten(2, (shots, n))  # (b, heads, K, N, d)
    proto = masked_average(k_sup, masks[:, None, :, :, None], dim=3)  # (b, heads, K, d)
    k_qry = k[:, :, shots * n:(shots + 1) * n]
    score = cosine(proto.unsqueeze(3), k_qry.unsqueeze(2))  # (b, heads, K, N)
    score = minmax(score).mean(2)  # (b, heads, N)
    if shots > 1:
        v_sup = v[:, :, :shots * n].unflatten(2, (shots, n))
        k = torch.cat([k_sup.mean(2), k[:, :, shots * n:]], dim=2)
        v = torch.cat([v_sup.mean(2), v[:, :, shots * n:]], dim=2)
    return k, v, score


def calibrated_attention(q: Tensor, k: Tensor, v: Tensor, score: Tensor, *,
                         dropout_p: float = 0.0, fp32: bool = False) -> Tensor:
    """Softmax attention of ``q`` over a calibrated bank (``calibrate``'s keys and values),
    with ``query_memory_bias`` added to the logits of the query-memory block ``N:2N``.

    The logits are computed once and the bias is taken from them; with ``fp32`` in float32
    even under autocast, otherwise in the autocast dtype (the release). Dropout (training)
    acts on the attention weights, as in SAM 2's attention.
    """
    n = q.shape[-2]
    precision = torch.autocast(q.device.type, enabled=False) if fp32 else contextlib.nullcontext()
    with precision:
        if fp32:
            q, k, v = q.float(), k.float(), v.float()
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        logits[..., n:2 * n] += query_memory_bias(logits[..., n:2 * n], score).to(logits.dtype)
        weights = F.dropout(logits.softmax(-1), p=dropout_p) if dropout_p else logits.softmax(-1)
        return weights @ v


@torch.no_grad()
def query_memory_bias(logits: Tensor, score: Tensor) -> Tensor:
    """``10·min(Â + ĉ - 1, 0)`` with Â the per-row min-max of the query-memory ``logits``
    (b, heads, N, N) and ``ĉ`` the ``score`` (b, heads, N); no gradient."""
    s = minmax(logits) + score.unsqueeze(-2) - 1
    return BIAS_SCALE * s.clamp(max=0)


@contextmanager
def calibrated(layers: list[CalibratedRoPEAttention], calibration: Calibration):
    """Set ``calibration`` on the given attentions for the duration of the block."""
    for layer in layers:
        layer.calibration = calibration
    try:
        yield
    finally:
        for layer in layers:
            layer.calibration = None
