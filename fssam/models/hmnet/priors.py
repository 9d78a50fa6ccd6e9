"""Support masks, prototypes and the two prior maps (README: HMNet).

Shapes: ``b`` episodes, ``K`` shots, ``S`` grid side; support tensors are (b, K, ...).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fssam.models.hmnet.pspnet import up

WGAP_EPS = 5e-4
COSINE_EPS = 1e-7


def support_masks_on_grid(labels: Tensor, grid: int) -> Tensor:
    """Labels (b,K,H,W) {0,1,255} -> soft masks ``up((label == 1), S)`` (b,K,S,S)."""
    return up((labels == 1).float(), grid)


def weighted_gap(features: Tensor, mask: Tensor) -> Tensor:
    """``sum(F m) / (sum(m) + 5e-4)`` over positions: (n,C,h,w), (n,1,h,w) -> (n,C,1,1).

    Each sum is computed as average pool times h*w, as the release does."""
    h, w = features.shape[-2:]
    area = F.avg_pool2d(mask, (h, w)) * h * w + WGAP_EPS
    return F.avg_pool2d(features * mask, (h, w)) * h * w / area


class SupportSummary(NamedTuple):
    """Shot means of the support: prototype ``p`` (b,C,1,1), masked feature ``Fs``
    (b,C,S,S), mask ``M`` (b,1,S,S); and the per-shot prototypes (b,K,C)."""

    prototype: Tensor
    masked_feature: Tensor
    mask: Tensor
    prototype_shots: Tensor


def summarise_support(features: Tensor, masks: Tensor) -> SupportSummary:
    """``features`` (b,K,C,S,S) and soft ``masks`` (b,K,S,S) -> shot means (section 2.5)."""
    b, k = masks.shape[:2]
    flat_f, flat_m = features.flatten(0, 1), masks.flatten(0, 1).unsqueeze(1)
    protos = weighted_gap(flat_f, flat_m).view(b, k, -1)
    masked = (flat_f * flat_m).unflatten(0, (b, k)).mean(1)
    return SupportSummary(protos.mean(1)[..., None, None], masked,
                          masks.mean(1, keepdim=True), protos)


def _cosine_to_query(prototype: Tensor, query: Tensor) -> Tensor:
    """Cosine of prototypes (n,C,1,1) with every query position (n,C,h,w) -> (n, h*w)."""
    q = query.flatten(2)
    p = prototype.flatten(1).unsqueeze(1)
    dots = torch.bmm(p, q).squeeze(1)
    norms = torch.bmm(p.norm(2, 2, True), q.norm(2, 1, True)).squeeze(1)
    return dots / (norms + COSINE_EPS)


def _minmax(x: Tensor) -> Tensor:
    lo, hi = x.min(1, keepdim=True)[0], x.max(1, keepdim=True)[0]
    return (x - lo) / (hi - lo + COSINE_EPS)


class LayerPrior(NamedTuple):
    """Per-shot prior maps of one layer, each (b,K,S,S), and their maxima (b,K)."""

    fg: Tensor
    bg: Tensor
    corr: Tensor
    fg_rawmax: Tensor
    corr_max: Tensor


def layer_prior(query: Tensor, support: Tensor, masks: Tensor, grid: int) -> LayerPrior:
    """Priors of one layer: query (b,C,n,n) at native size, support (b,K,C,h,w), soft masks
    (b,K,S,S) -> FG / BG cosine maps min-max normalised and resized to S, their rectified
    difference ``corr``, the raw FG cosine maximum and the ``corr`` maximum (section 2.6)."""
    b, k = masks.shape[:2]
    n = query.shape[-1]
    supp = up(support.flatten(0, 1), grid)
    m = masks.flatten(0, 1).unsqueeze(1)
    q = query.repeat_interleave(k, dim=0)
    sim_fg = _cosine_to_query(weighted_gap(supp, m), q)
    sim_bg = _cosine_to_query(weighted_gap(supp, 1 - m), q)
    fg = up(_minmax(sim_fg).view(-1, 1, n, n), grid)
    bg = up(_minmax(sim_bg).view(-1, 1, n, n), grid)
    corr = (fg - bg).clamp_min(0)

    def shots(x: Tensor) -> Tensor:
        return x.view(b, k, *x.shape[2:])

    return LayerPrior(shots(fg), shots(bg), shots(corr), sim_fg.max(1)[0].view(b, k),
                      corr.flatten(1).max(1)[0].view(b, k))


class Priors(NamedTuple):
    """``prior`` (b,2,S,S) = [shot mean of the chosen FG maps, of the chosen corr maps];
    ``use_f4_fg`` / ``use_f4_corr`` (b,K) whether the head (f4) map was chosen."""

    prior: Tensor
    use_f4_fg: Tensor
    use_f4_corr: Tensor
    fg_shots: Tensor
    corr_shots: Tensor
    f3: LayerPrior
    f4: LayerPrior


def prior_maps(query: dict[str, Tensor], support: dict[str, Tensor], masks: Tensor,
               grid: int) -> Priors:
    """Both priors from f3 (layer4) and f4 (PSPNet head); per sample and shot the FG map of
    the layer with the larger raw cosine maximum and the corr map of the layer with the
    larger corr maximum (ties keep f3), then shot means."""
    p3 = layer_prior(query["f3"], support["f3"], masks, grid)
    p4 = layer_prior(query["f4"], support["f4"], masks, grid)
    use_fg = p3.fg_rawmax < p4.fg_rawmax
    use_corr = p3.corr_max < p4.corr_max
    fg = torch.where(use_fg[..., None, None], p4.fg, p3.fg)
    corr = torch.where(use_corr[..., None, None], p4.corr, p3.corr)
    prior = torch.stack([fg.mean(1), corr.mean(1)], dim=1)
    return Priors(prior, use_fg, use_corr, fg, corr, p3, p4)
