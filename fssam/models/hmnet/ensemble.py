"""The Gram-matrix ensemble of the meta and base learners (README: HMNet)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

GRAM_EPS = 1e-7


def gram_matrix(features: Tensor) -> Tensor:
    """Channel cosine matrix (n,C,C) of (n,C,h,w): ``F F^T / (|F_i| |F_j| + 1e-7)`` with
    norms over positions."""
    f = features.flatten(2)
    norms = f.norm(2, 2, True)
    return torch.bmm(f, f.transpose(1, 2)) / (torch.bmm(norms, norms.transpose(1, 2)) + GRAM_EPS)


def scene_differences(query_f1: Tensor, support_f1: Tensor) -> dict[str, Tensor]:
    """``est_k = |G(q) - G(s_k)|_F / C`` for query f1 (b,C,h,w) and support f1 (b,K,C,h,w):
    ``{"gram_q" (b,C,C), "gram_s" (b*K,C,C), "est_shots" (b,K)}``."""
    b, k = support_f1.shape[:2]
    gram_q = gram_matrix(query_f1)
    gram_s = gram_matrix(support_f1.flatten(0, 1))
    diff = gram_q.repeat_interleave(k, dim=0) - gram_s
    norm_max = torch.ones_like(gram_q[:1]).norm(2, (1, 2))
    est = (diff.norm(2, (1, 2)) / norm_max).view(b, k)
    return {"gram_q": gram_q, "gram_s": gram_s, "est_shots": est}


def kshot_reweighter(shot: int, hidden: int = 2) -> nn.Sequential:
    """``kshot_rw``: conv1x1 (K -> 2, bias) -> ReLU -> conv1x1 (2 -> K, bias)."""
    return nn.Sequential(nn.Conv2d(shot, hidden, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, shot, 1))


def combine_shots(est_shots: Tensor, reweighter: nn.Module | None, *, rank_fix: bool
                  ) -> dict[str, Tensor]:
    """One scene difference per episode from (b,K) per-shot values.

    K = 1 (``reweighter`` None): the value itself. K > 1: weights
    ``softmax_k(kshot_rw(sorted values))``; the release multiplies the weight of the j-th
    smallest value with the j-th shot in INPUT order (the release's; default); ``rank_fix``
    gives each shot the weight of its rank, as BAM does.
    """
    if reweighter is None:
        if est_shots.shape[1] != 1:
            raise ValueError(f"{est_shots.shape[1]} shots but the model has no kshot_rw")
        return {"est": est_shots[:, 0]}
    values, order = est_shots.sort(1)
    rank = order.argsort(1)
    raw = reweighter(values[..., None, None])[..., 0, 0]
    weights = raw.gather(1, rank) if rank_fix else raw
    soft = weights.softmax(1)
    return {"est": (soft * est_shots).sum(1), "sorted": values, "sort_idx": order,
            "rank": rank, "rw_out": raw, "weights": soft}


def base_map(base_logits: Tensor, class_index: Tensor | None) -> Tensor:
    """Probability of any base class (b,1,S,S) from base logits (b,1+B,S,S); with
    ``class_index`` (b,) (training: the episode class's 0-based index in the base list)
    that class is left out."""
    probs = base_logits.softmax(1)
    if class_index is None:
        return probs[:, 1:].sum(1, keepdim=True)
    ids = torch.arange(probs.shape[1], device=probs.device)
    keep = (ids[None] != 0) & (ids[None] != class_index.to(probs.device)[:, None] + 1)
    return (probs * keep[..., None, None]).sum(1, keepdim=True)


def merge_conv() -> nn.Conv2d:
    """``gram_merge`` / ``cls_merge``: conv1x1 (2 -> 1, no bias) initialised to (1, 0)."""
    conv = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    return conv


def ensemble(meta_logits: Tensor, base: Tensor, est: Tensor, gram_merge: nn.Module,
             cls_merge: nn.Module) -> dict[str, Any]:
    """``final = [cls_merge(gram_merge(Pm_bg, est), base), gram_merge(Pm_fg, est)]``."""
    probs = meta_logits.softmax(1)
    est_map = est.view(-1, 1, 1, 1).expand_as(probs[:, :1])
    meta_bg = gram_merge(torch.cat([probs[:, :1], est_map], 1))
    meta_fg = gram_merge(torch.cat([probs[:, 1:], est_map], 1))
    merge_bg = cls_merge(torch.cat([meta_bg, base], 1))
    return {"meta_map_bg": meta_bg, "meta_map_fg": meta_fg, "merge_bg": merge_bg,
            "final": torch.cat([merge_bg, meta_fg], 1)}
