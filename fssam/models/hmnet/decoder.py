"""The meta learner's convolutions around the Mamba stack: feature reductions (README: HMNet;
2.4), merges (2.7) and the decoder (2.9: ASPP, res1, res2, cls_meta)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ASPP_DILATIONS = (6, 12, 18)


def reduction(in_dim: int, out_dim: int) -> nn.Sequential:
    """``down_query`` / ``down_supp``: conv1x1 (no bias) -> ReLU -> Dropout2d(0.5)."""
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, bias=False), nn.ReLU(inplace=True),
                         nn.Dropout2d(0.5))


def merge(in_dim: int, out_dim: int) -> nn.Sequential:
    """``init_merge_query`` (C+C+2 -> C) / ``init_merge_supp`` (C+C+1 -> C): conv1x1, no
    bias, no activation."""
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, bias=False))


class ASPP(nn.Module):
    """``[pool branch, 1x1, 3x3 dilation 6, 12, 18]``, each conv with bias + ReLU; the pool
    branch is global average pool -> conv1x1 -> ReLU broadcast over the map."""

    def __init__(self, *, dim: int = 256) -> None:
        super().__init__()
        self.layer6_0 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.ReLU(inplace=True))
        self.layer6_1 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.ReLU(inplace=True))
        for i, d in enumerate(ASPP_DILATIONS, start=2):
            setattr(self, f"layer6_{i}", nn.Sequential(
                nn.Conv2d(dim, dim, 3, padding=d, dilation=d), nn.ReLU(inplace=True)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.layer6_0(F.avg_pool2d(x, x.shape[-2:])).expand(-1, -1, *x.shape[-2:])
        branches = [getattr(self, f"layer6_{i}")(x) for i in range(1, 5)]
        return torch.cat([pooled] + branches, dim=1)


def meta_decoder(dim: int = 256) -> dict[str, nn.Module]:
    """The decoder's modules under the release's top-level names: ``ASPP_meta``,
    ``res1_meta`` (conv1x1 5C -> C, ReLU), ``res2_meta`` ([conv3x3, ReLU] x 2) and
    ``cls_meta`` (conv3x3, ReLU, Dropout2d(0.1), conv1x1 C -> 2 with bias)."""
    return {
        "ASPP_meta": ASPP(dim=dim),
        "res1_meta": nn.Sequential(nn.Conv2d(5 * dim, dim, 1, bias=False), nn.ReLU(inplace=True)),
        "res2_meta": nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.ReLU(inplace=True)),
        "cls_meta": nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.ReLU(inplace=True),
            nn.Dropout2d(0.1), nn.Conv2d(dim, 2, 1)),
    }


def decode(feat: Tensor, modules: dict[str, nn.Module]) -> dict[str, Tensor]:
    """``feat`` (b,C,S,S) (the ReLU of the Mamba output) -> ASPP -> res1 -> res2 (+ skip)
    -> cls_meta: intermediates and the 2-channel ``meta`` logits (background, foreground)."""
    aspp = modules["ASPP_meta"](feat)
    res1 = modules["res1_meta"](aspp)
    res2 = modules["res2_meta"](res1) + res1
    return {"aspp_out": aspp, "res1_out": res1, "res2_out": res2,
            "meta": modules["cls_meta"](res2)}
