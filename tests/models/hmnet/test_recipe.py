"""HMNet's two optimisers and the base learner's SGD: which parameters, which weight decay,
which learning rates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fssam.models.hmnet import PSPNet
from fssam.models.hmnet.recipe import hmnet_optimizers, pspnet_optimizers


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(4)
        self.out_norm = nn.LayerNorm(4)
        self.in_proj = nn.Linear(4, 4, bias=False)
        self.A_logs = nn.Parameter(torch.zeros(4, 2))


class _Mamba(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block()])
        self.norm = nn.LayerNorm(4)


class _Tiny(nn.Module):
    """The release's module names, tiny."""

    def __init__(self) -> None:
        super().__init__()
        self.layer0 = nn.Conv2d(3, 4, 1)
        self.layer0.requires_grad_(False)
        self.down_query = nn.Conv2d(4, 4, 1, bias=False)
        self.cls_meta = nn.Conv2d(4, 2, 1)
        self.gram_merge = nn.Conv2d(2, 1, 1, bias=False)
        self.mamba = _Mamba()


def _names(model: nn.Module, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_parameters_split_between_sgd_and_adamw_with_release_decay_rules():
    model = _Tiny()
    sgd, adamw = hmnet_optimizers(model)
    assert _names(model, sgd.optimizer.param_groups[0]["params"]) == {
        "down_query.weight", "cls_meta.weight", "cls_meta.bias", "gram_merge.weight"}
    assert sgd.optimizer.param_groups[0]["weight_decay"] == 1e-4
    decay, no_decay = adamw.optimizer.param_groups
    assert _names(model, decay["params"]) == {
        "mamba.blocks.0.ln_1.weight", "mamba.blocks.0.ln_1.bias", "mamba.blocks.0.in_proj.weight",
        "mamba.blocks.0.A_logs"}
    assert _names(model, no_decay["params"]) == {
        "mamba.blocks.0.out_norm.weight", "mamba.blocks.0.out_norm.bias", "mamba.norm.weight",
        "mamba.norm.bias"}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)


def test_learning_rates_follow_the_release_step_by_step():
    sgd, adamw = hmnet_optimizers(_Tiny())
    total = 40
    for done in range(total):
        expected = 10 * 0.005 * (1 - (done + 1) / total) ** 0.9
        assert sgd.set_lr(done, total) == pytest.approx(expected, rel=1e-12, abs=0)
        assert adamw.set_lr(done, total) == 6e-5
        assert {g["lr"] for g in adamw.optimizer.param_groups} == {6e-5}


@pytest.mark.parametrize("batch, factor", [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4)])
def test_adamw_rate_follows_the_per_process_batch_as_the_release(batch, factor):
    # the release: 6e-5 * (batch_size // 2); its 0 at batch 1 would freeze the Mamba stack
    _, adamw = hmnet_optimizers(_Tiny(), batch_size=batch)
    assert adamw.set_lr(0, 10) == pytest.approx(6e-5 * factor, rel=1e-12)


def test_a_trainable_parameter_outside_both_optimisers_is_named():
    model = _Tiny()
    model.extra_head = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="extra_head.weight"):
        hmnet_optimizers(model)


def _psp() -> nn.Module:
    return PSPNet(backbone="resnet50", num_base_classes=3, backbone_width=4, head_dim=8)


@pytest.mark.parametrize("backbone_lr, head_lr", [(2.5e-4, 2.5e-3), (2.5e-3, 2.5e-3)])
def test_base_learner_groups_and_rates_follow_bam_step_by_step(backbone_lr, head_lr):
    model = _psp()
    (sgd,) = pspnet_optimizers(model, backbone_lr=backbone_lr, head_lr=head_lr)
    backbone, ppm, cls = sgd.optimizer.param_groups
    names = {f"layer{i}" for i in range(5)}
    assert {n.split(".")[0] for n in _names(model, backbone["params"])} == names
    assert _names(model, ppm["params"]) == {n for n, _ in model.named_parameters()
                                            if n.startswith("ppm.")}
    assert _names(model, cls["params"]) == {n for n, _ in model.named_parameters()
                                            if n.startswith("cls.")}
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 0.9 for g in (backbone, ppm, cls))
    total = 30
    for done in range(total):
        factor = (1 - (done + 1) / total) ** 0.9  # BAM: 1-based iteration, set before the step
        sgd.set_lr(done, total)
        assert backbone["lr"] == pytest.approx(backbone_lr * factor, rel=1e-12, abs=0)
        assert ppm["lr"] == cls["lr"] == pytest.approx(head_lr * factor, rel=1e-12, abs=0)


def test_base_learner_parameter_outside_the_groups_is_named():
    model = _psp()
    model.aux = nn.Conv2d(2, 2, 1)
    with pytest.raises(ValueError, match="aux.weight"):
        pspnet_optimizers(model)
