"""The Dice loss (README: Training)."""

import pytest
import torch

from fssam.models.losses import dice_loss


def reference_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    losses = []
    for x, y in zip(logits, target):
        p = torch.sigmoid(x).double()
        t = (y == 1).double()
        losses.append(1 - 2 * (p * t).sum() / max((p * p).sum() + (t * t).sum(), 1e-8))
    return torch.stack(losses).mean().float()


def test_matches_per_sample_formula_and_ignore_is_background():
    torch.manual_seed(0)
    logits = torch.randn(3, 16, 16) * 3
    target = torch.randint(0, 2, (3, 16, 16))
    target[:, :2] = 255
    loss = dice_loss(logits, target)
    torch.testing.assert_close(loss, reference_dice(logits, target), atol=1e-6, rtol=0)
    as_background = target.masked_fill(target == 255, 0)
    torch.testing.assert_close(loss, dice_loss(logits, as_background), atol=0, rtol=0)


def test_mean_over_batch_of_per_sample_losses():
    torch.manual_seed(1)
    logits = torch.randn(2, 8, 8)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0, :4] = 1  # sample 1 has no foreground: its loss is 1 (prediction has no overlap)
    per_sample = torch.stack([dice_loss(logits[i:i + 1], target[i:i + 1]) for i in range(2)])
    assert per_sample[1].item() == pytest.approx(1.0)
    torch.testing.assert_close(dice_loss(logits, target), per_sample.mean())


def test_perfect_and_inverse_predictions_and_gradient():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    perfect = (target.float() * 2 - 1) * 50
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-perfect, target).item() == pytest.approx(1.0, abs=1e-6)
    logits = torch.zeros(1, 8, 8, requires_grad=True)
    dice_loss(logits, target).backward()
    assert (logits.grad[target == 1] < 0).all() and (logits.grad[target == 0] > 0).all()


def test_empty_target_and_confident_background_is_finite():
    logits = torch.full((1, 4, 4), -100.0)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    assert torch.isfinite(dice_loss(logits, target))
