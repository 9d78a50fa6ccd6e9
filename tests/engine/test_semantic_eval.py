"""Base-class mIoU: sums over the set, background excluded, ignore pixels left out."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from fssam.engine.semantic_eval import BaseClassMeter, run_base_class_evaluation


def test_iou_sums_over_images_background_excluded_ignore_left_out():
    meter = BaseClassMeter([6, 7])  # labels: 0 background, 1 = class 6, 2 = class 7
    meter.update(torch.tensor([[1, 1, 0, 2]]), torch.tensor([[1, 0, 0, 255]]))
    meter.update(torch.tensor([[2, 2, 1, 0]]), torch.tensor([[2, 1, 1, 2]]))
    # class 6: inter 1 + 1, union 2 + 2; class 7: inter 0 + 1, union 0 + 3
    result = meter.compute()
    assert result["class_iou"] == {6: pytest.approx(50.0), 7: pytest.approx(100 / 3)}
    assert result["miou"] == pytest.approx((50.0 + 100 / 3) / 2)


def test_a_class_never_seen_nor_predicted_counts_as_zero():
    meter = BaseClassMeter([1, 2, 3])
    meter.update(torch.tensor([1, 2]), torch.tensor([1, 2]))
    assert meter.compute() == {"miou": pytest.approx(200 / 3), "class_iou": {
        1: pytest.approx(100.0), 2: pytest.approx(100.0), 3: 0.0}}


def test_bad_targets_and_shapes_are_refused():
    meter = BaseClassMeter([1])
    with pytest.raises(ValueError, match="target label 2 outside 0..1 and 255"):
        meter.update(torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(ValueError, match="differs from target shape"):
        meter.update(torch.tensor([0, 1]), torch.tensor([0]))


class _Copy(nn.Module):
    """Predicts the class stored in the image's first channel."""

    def forward(self, batch):
        return {"logits": nn.functional.one_hot(batch["image"][:, 0].long(), 3)
                .permute(0, 3, 1, 2).float()}


def test_evaluation_runs_the_model_in_eval_mode_and_restores_training():
    labels = torch.tensor([[[0, 1], [2, 255]], [[1, 1], [2, 2]]])
    images = torch.stack([torch.stack([l.clamp(max=2)] * 3).float() for l in labels])
    images[1, 0, 0, 0] = 2  # one wrong pixel: class 1 union 3, inter 2
    items = [{"image": i, "label": l} for i, l in zip(images, labels)]
    model = _Copy().train()
    result = run_base_class_evaluation(model, DataLoader(items, batch_size=2), class_ids=[4, 9],
                                       device="cpu", progress=False)
    assert result["class_iou"] == {4: pytest.approx(200 / 3), 9: pytest.approx(75.0)}
    assert model.training
