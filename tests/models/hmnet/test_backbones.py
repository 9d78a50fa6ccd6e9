"""Backbones, the PSPNet base learner and the whole model's parameters against the release's
layout: state-dict keys and shapes (the parity weights' key list), strides and dilations,
and the release's parameter counts."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import Bottleneck

from fssam.models.hmnet import HMNet, PSPNet
from fssam.models.hmnet.backbones import backbone_stages

PARAMETERS_M = {"resnet50": (61.60, 14.89), "vgg": (34.21, 14.49)}   # total, trainable


def release_shapes(hmnet_parity_rows: list[dict], shot: int) -> dict[str, tuple]:
    return {r["key"]: tuple(r["shape"]) for r in hmnet_parity_rows
            if shot > 1 or not r["key"].startswith("kshot_rw.")}


@pytest.fixture(scope="module", params=["resnet50", "vgg"])
def full_size(request, hmnet_parity):
    """(backbone, the release's weight rows (5-shot key order), our 5-shot and 1-shot
    models)."""
    rows = hmnet_parity(f"weights_{request.param}")["rows"]
    return (request.param, rows, HMNet(backbone=request.param, shot=5),
            HMNet(backbone=request.param))


def test_state_dict_keys_and_shapes_are_the_release_s(full_size):
    _, rows, model, one_shot = full_size
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == [r["key"] for r in rows]                 # same keys, same order
    assert ours == release_shapes(rows, 5)
    assert {k: tuple(v.shape) for k, v in one_shot.state_dict().items()} == release_shapes(rows, 1)


def test_parameter_counts(full_size):
    backbone, _, model, one_shot = full_size
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total - sum(p.numel() for p in one_shot.parameters()) == 27   # kshot_rw, K = 5
    counted = (sum(p.numel() for p in one_shot.parameters()),
               sum(p.numel() for p in one_shot.parameters() if p.requires_grad))
    assert tuple(round(n / 1e6, 2) for n in counted) == PARAMETERS_M[backbone]
    assert trainable - counted[1] == 27


def test_pspnet_keys_are_the_base_learner_s(full_size):
    backbone, rows, *_ = full_size
    expected = {r["key"].replace("base_learner.2.", "cls.4."): tuple(r["shape"]) for r in rows
                if r["key"].startswith(("layer", "ppm.", "cls.", "base_learner."))}
    with torch.device("meta"):
        psp = PSPNet(backbone=backbone)
    assert {k: tuple(v.shape) for k, v in psp.state_dict().items()} == expected


def output_sizes(stages, size: int = 97) -> list[int]:
    """Each stage's output width for a ``size`` x ``size`` input run through them all."""
    x, sizes = torch.rand(1, 3, size, size), []
    with torch.no_grad():
        for stage in stages:
            x = stage(x)
            sizes.append(x.shape[-1])
    return sizes


def test_resnet_is_dilated_for_output_stride_8():
    stages = backbone_stages("resnet50", width=8)
    for stage, dilation in ((stages[3], 2), (stages[4], 4)):
        for block in stage:
            assert isinstance(block, Bottleneck)
            assert block.conv2.dilation == (dilation,) * 2 == block.conv2.padding
            assert block.conv2.stride == (1, 1)
        assert stage[0].downsample[0].stride == (1, 1)
    assert output_sizes(stages) == [25, 25, 13, 13, 13]


def test_vgg_strides_ceil_pools_and_no_last_pool():
    stages = backbone_stages("vgg", width=8)
    pools = [m for s in stages for m in s if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.ceil_mode for p in pools)
    assert not isinstance(stages[4][-1], torch.nn.MaxPool2d)
    assert output_sizes(stages) == [49, 25, 13, 7, 7]


def test_pspnet_forward_gives_class_logits_at_input_size():
    psp = PSPNet(backbone="resnet50", num_base_classes=60, backbone_width=8, head_dim=16).eval()
    with torch.no_grad():
        assert psp({"image": 255 * torch.rand(2, 3, 41, 41)})["logits"].shape == (2, 61, 41, 41)
