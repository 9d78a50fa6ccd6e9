"""Iterative Memory Refinement (IMR, README: The model) and the masked-prototype helpers.

The query's ``fb`` memory (encoded from the FG-minus-BG prior) is pulled towards its ``fg``
memory where both the support prototype and the current ``fb`` prototype agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

PROTOTYPE_EPS = 5e-4
COSINE_EPS = 1e-7
MINMAX_EPS = 1e-7


def masked_average(feat: Tensor, weight: Tensor, dim: int = -1) -> Tensor:
    """``Σ f·m / (Σ m + 5e-4)`` over ``dim`` (the positions); ``weight`` broadcasts."""
    return (feat * weight).sum(dim) / (weight.sum(dim) + PROTOTYPE_EPS)


def minmax(x: Tensor, dim: int | tuple[int, ...] = -1) -> Tensor:
    """``(x - min) / (max - min + 1e-7)`` over ``dim``."""
    lo = x.amin(dim, keepdim=True)
    hi = x.amax(dim, keepdim=True)
    return (x - lo) / (hi - lo + MINMAX_EPS)


def cosine(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """``a·b / (‖a‖‖b‖ + 1e-7)`` along ``dim``."""
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + COSINE_EPS)


def prototype_similarity(query: Tensor, source: Tensor, weight: Tensor) -> Tensor:
    """Min-max normalised cosine of every ``query`` position with the prototype of ``source``.

    ``query`` (b, M, h, w); ``source`` (b, K, M, h, w); ``weight`` (b, K, 1, h, w). The
    similarity is computed per shot, then averaged over shots -> (b, 1, h, w).
    """
    proto = masked_average(source.flatten(3), weight.flatten(3))  # (b, K, M)
    sim = cosine(query.flatten(2).unsqueeze(1), proto.unsqueeze(-1), dim=2)  # (b, K, hw)
    sim = minmax(sim).mean(1, keepdim=True)
    return sim.unflatten(2, query.shape[-2:])


@dataclass
class RefineOutput:
    """Refined query memory and prior; ``steps`` holds (mem_fb, prior_fb) per iteration."""

    mem_fb: Tensor
    prior_fb: Tensor
    sim_support: Tensor
    steps: list[tuple[Tensor, Tensor]] = field(default_factory=list)


def refine_memory(mem_fg: Tensor, mem_fb: Tensor, mem_support: Tensor, support_mask: Tensor,
                  prior_fg: Tensor, prior_fb: Tensor, *, iterations: int = 3,
                  version: str = "v1") -> RefineOutput:
    """Iterative Memory Refinement on the memory grid.

    ``mem_fg``/``mem_fb`` (b, M, h, w); ``mem_support`` (b, K, M, h, w); ``support_mask``
    (b, K, 1, h, w); ``prior_fg``/``prior_fb`` (b, 1, h, w), all at the memory grid size.
    """
    if version not in ("v1", "v2"):
        raise ValueError(f"unknown refinement version {version!r} (v1 or v2)")
    sim_support = prototype_similarity(mem_fg, mem_support, support_mask)
    out = RefineOutput(mem_fb, prior_fb, sim_support)
    for _ in range(iterations):
        sim_fb = prototype_similarity(mem_fg, mem_fb.unsqueeze(1), prior_fb.unsqueeze(1))
        w = F.relu(sim_support + sim_fb - 1)
        if version == "v2":
            w = minmax(w, dim=(-2, -1))
        mem_fb = w * mem_fg + (1 - w) * mem_fb
        prior_fb = minmax(w * prior_fg + (1 - w) * prior_fb, dim=(-2, -1))
        out.steps.append((mem_fb, prior_fb))
    out.mem_fb, out.prior_fb = mem_fb, prior_fb
    return out
