"""HMNet's losses: cross entropy on the ensemble output plus two-channel sigmoid Dice."""

from __future__ import annotations

import math

import torch

from fssam.models.hmnet.losses import hmnet_losses


def _labels() -> torch.Tensor:
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    target[0, :3] = 1
    target[1, 2:4, 2:4] = 1
    target[:, 5, 5] = 255
    return target


def test_dice_part_follows_the_per_sample_per_channel_formula():
    torch.manual_seed(0)
    meta, final, target = torch.randn(2, 2, 6, 6), torch.rand(2, 2, 6, 6), _labels()
    expected = 0.0
    for i in range(2):
        for channel, wanted in ((0, 0), (1, 1)):
            p = torch.sigmoid(meta[i, channel])
            t = (target[i] == wanted).float()
            expected += 1 - 2 * (p * t).sum() / max((p * p).sum() + (t * t).sum(), 1e-8)
    out = hmnet_losses(final, meta, target)
    assert math.isclose(out["aux"].item(), expected / 2, rel_tol=1e-6)
    assert math.isclose(out["loss"].item(), out["main"].item() + out["aux"].item(), rel_tol=1e-6)


def test_cross_entropy_ignores_255_and_treats_probabilities_as_logits():
    torch.manual_seed(1)
    final, meta, target = torch.rand(2, 2, 6, 6), torch.randn(2, 2, 6, 6), _labels()
    out = hmnet_losses(final, meta, target)
    changed = final.clone()
    changed[:, :, 5, 5] = 100.0  # ignore pixels
    assert torch.equal(hmnet_losses(changed, meta, target)["main"], out["main"])
    valid = target != 255
    logp = torch.log_softmax(final, dim=1)
    picked = logp.gather(1, target.clamp(max=1)[:, None])[:, 0]
    assert math.isclose(out["main"].item(), -picked[valid].mean().item(), rel_tol=1e-6)


def test_aux_weight_scales_only_the_dice_part():
    torch.manual_seed(2)
    final, meta, target = torch.rand(2, 2, 6, 6), torch.randn(2, 2, 6, 6), _labels()
    half = hmnet_losses(final, meta, target, aux_weight=0.5)
    assert math.isclose(half["loss"].item(), half["main"].item() + 0.5 * half["aux"].item(),
                        rel_tol=1e-6)


def test_confident_correct_meta_gives_near_zero_dice():
    target = _labels()
    fg = (target == 1).float() * 2 - 1
    bg = (target == 0).float() * 2 - 1
    meta = torch.stack([bg, fg], dim=1) * 50
    aux = hmnet_losses(torch.rand(2, 2, 6, 6), meta, target)["aux"]
    assert aux.item() < 1e-3
