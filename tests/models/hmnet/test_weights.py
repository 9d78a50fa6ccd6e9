"""Loaders of the release's weight files: ImageNet backbones, BAM base learners and HMNet
checkpoints, each in the layout the authors' code writes, and every failure named."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from torchvision.models.vgg import make_layers

from fssam.models.hmnet import (HMNet, PSPNet, build_model, build_pspnet, load_base_learner,
                                load_imagenet_backbone, load_release_checkpoint)
from fssam.models.hmnet.model import TINY_SIZES
from fssam.models.hmnet.weights import strip_ddp_prefix

from .conftest import write_release_checkpoint

PSP_SIZES = {"backbone_width": TINY_SIZES["backbone_width"], "head_dim": TINY_SIZES["head_dim"]}
STEM = {"layer0.0": "conv1", "layer0.1": "bn1", "layer0.3": "conv2", "layer0.4": "bn2",
        "layer0.6": "conv3", "layer0.7": "bn3"}


def randomised(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v + seed
            for k, v in model.state_dict().items()}


def same(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


def resnet_v2_file(backbone_state: dict) -> dict:
    """A PSPNet backbone state in ``resnet50_v2.pth``'s layout (plain ResNet names, fc)."""
    out = {}
    for key, value in backbone_state.items():
        stage = ".".join(key.split(".")[:2])
        out[key.replace(stage, STEM[stage]) if stage in STEM else key] = value
    return out | {"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}


def test_imagenet_resnet50_v2_layout(tmp_path):
    source = randomised(PSPNet(**PSP_SIZES), 1)
    backbone = {k: v for k, v in source.items() if k.startswith("layer")}
    torch.save(resnet_v2_file(backbone), tmp_path / "resnet50_v2.pth")
    model = build_pspnet(imagenet_checkpoint=tmp_path / "resnet50_v2.pth", **PSP_SIZES)
    assert same(model.state_dict(), backbone, backbone)


def test_imagenet_vgg16_bn_torchvision_layout(tmp_path):
    width = PSP_SIZES["backbone_width"]
    cfg = [c if c == "M" else c * width // 64
           for c in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                     512, 512, 512, "M")]
    features = make_layers(cfg, batch_norm=True)
    file_state = {f"features.{k}": v for k, v in randomised(features, 2).items()}
    torch.save(file_state | {"classifier.0.weight": torch.zeros(3, 3)}, tmp_path / "vgg.pth")
    model = PSPNet(backbone="vgg", **PSP_SIZES)
    load_imagenet_backbone(model, tmp_path / "vgg.pth", backbone="vgg")
    state = model.state_dict()
    assert torch.equal(state["layer0.0.weight"], file_state["features.0.weight"])
    assert torch.equal(state["layer2.7.running_var"], file_state["features.21.running_var"])
    assert torch.equal(state["layer4.7.bias"], file_state["features.41.bias"])


def bam_file(path, psp_state: dict) -> None:
    """A BAM base learner ``best.pth``: DDP keys, ``encoder.*`` duplicates, optimizer."""
    state = {f"module.{k}": v for k, v in psp_state.items()}
    state |= {f"module.encoder.{k[5]}.{k.split('.', 1)[1]}": v for k, v in psp_state.items()
              if k.startswith("layer")}
    torch.save({"epoch": 60, "state_dict": state, "optimizer": {"state": {}}}, path)


@pytest.mark.parametrize("backbone", ["resnet50", "vgg"])
def test_base_learner_into_pspnet_and_into_hmnet(tmp_path, backbone):
    psp_state = randomised(PSPNet(backbone=backbone, **PSP_SIZES), 3)
    bam_file(tmp_path / "best.pth", psp_state)
    psp = PSPNet(backbone=backbone, **PSP_SIZES)
    load_base_learner(psp, tmp_path / "best.pth")
    assert same(psp.state_dict(), psp_state, psp_state)
    model = build_model(backbone=backbone, base_learner_checkpoint=tmp_path / "best.pth",
                        **TINY_SIZES)
    state = model.state_dict()
    assert torch.equal(state["base_learner.2.weight"], psp_state["cls.4.weight"])
    assert same(state, psp_state, [k for k in psp_state if not k.startswith("cls.4.")])


def test_checkpoint_of_our_base_learner_stage_loads_into_hmnet(tmp_path):
    psp = PSPNet(backbone="vgg", **PSP_SIZES)
    psp_state = randomised(psp, 5)
    psp.load_trainable_state_dict(psp_state)
    torch.save({"model": psp.trainable_state_dict(), "optimizers": {"sgd": {}}, "epoch": 2,
                "iteration": 8, "best_miou": 1.0, "config": {}, "rng": []}, tmp_path / "best.pt")
    model = build_model(backbone="vgg", base_learner_checkpoint=tmp_path / "best.pt",
                        **TINY_SIZES)
    state = model.state_dict()
    assert torch.equal(state["base_learner.2.bias"], psp_state["cls.4.bias"])
    assert same(state, psp_state, [k for k in psp_state if not k.startswith("cls.4.")])


def test_release_checkpoint_layout_loads(tmp_path):
    source = HMNet(shot=5, **TINY_SIZES)
    state = randomised(source, 4)
    path = write_release_checkpoint(tmp_path / "best.pth", state)
    model = build_model(shot=5, checkpoint=path,
                        base_learner_checkpoint=tmp_path / "not_there.pth", **TINY_SIZES)
    assert same(model.state_dict(), state, state)


def mismatch(tmp_path, state: dict, **kwargs) -> str:
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(KeyError) as err:
        load_release_checkpoint(HMNet(**TINY_SIZES, **kwargs), path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_missing_unexpected_and_misshapen_keys_are_named_with_the_file(tmp_path):
    state = HMNet(**TINY_SIZES).state_dict()
    wrong = dict(state)
    del wrong["gram_merge.weight"]
    wrong["kshot_rw.0.weight"] = torch.zeros(2, 5, 1, 1)
    wrong["cls_merge.weight"] = torch.zeros(1, 3, 1, 1)
    message = mismatch(tmp_path, wrong)
    assert "missing keys ['gram_merge.weight']" in message
    assert "unexpected keys ['kshot_rw.0.weight']" in message
    assert "cls_merge.weight: file (1, 3, 1, 1), model (1, 2, 1, 1)" in message
    assert "kshot_rw.0.bias" in mismatch(tmp_path, state, shot=5)   # 1-shot file, 5-shot model


def test_only_a_literal_module_prefix_is_stripped(tmp_path):
    assert strip_ddp_prefix({"module.a.b": 1, "modules.c": 2, "x.module.d": 3}) == {
        "a.b": 1, "modules.c": 2, "x.module.d": 3}
    state = {k: v for k, v in HMNet(**TINY_SIZES).state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "plain.pth")   # no prefix at all: loads
    load_release_checkpoint(HMNet(**TINY_SIZES), tmp_path / "plain.pth")


def test_unreadable_and_missing_files_are_named(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"a": object()}}, f, protocol=2)
    with pytest.raises(ValueError, match=re.escape(f"HMNet checkpoint {path} cannot be read")):
        load_release_checkpoint(HMNet(**TINY_SIZES), path)
    with pytest.raises(FileNotFoundError, match="base learner .*nowhere.pth not found"):
        load_base_learner(HMNet(**TINY_SIZES), tmp_path / "nowhere.pth")


def test_random_weights_warn(caplog):
    build_model(**TINY_SIZES)
    assert "random weights" in caplog.text
