"""HMNet gives its two prior maps, so the engine's prior-only baseline can score them."""

from __future__ import annotations

import torch

from fssam.engine.evaluate import PriorOnly
from fssam.models.hmnet import HMNet
from fssam.models.hmnet.model import TINY_SIZES


def test_priors_are_the_prior_maps_and_prior_only_thresholds_the_fg_one():
    torch.manual_seed(0)
    model = HMNet(shot=1, **TINY_SIZES).eval()
    g = torch.Generator().manual_seed(3)
    batch = {"query_img": 255 * torch.rand(2, 3, 33, 33, generator=g),
             "support_imgs": 255 * torch.rand(2, 1, 3, 33, 33, generator=g),
             "support_masks": (torch.rand(2, 1, 33, 33, generator=g) > 0.5).long()}
    with torch.no_grad():
        out = model(batch, return_intermediates=True)
        baseline = PriorOnly(model)(batch)
    grid = TINY_SIZES["grid"]
    assert out["priors"].shape == (2, 2, grid, grid)
    assert torch.equal(out["priors"], out["intermediates"]["corr_query_mask"])
    assert torch.equal(baseline["logits"], out["priors"][:, 0] - 0.5)
