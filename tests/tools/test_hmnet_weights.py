"""download_weights.py for the HMNet and BAM files: listed with their pages, never
downloaded, and checked in place (exists, loads with weights_only, keys and shapes)."""

from __future__ import annotations

import functools

import logging
import pickle

import pytest
import torch

from fssam.models.hmnet import HMNet, PSPNet
from fssam.models.hmnet.model import TINY_SIZES
from fssam.tools import hmnet_weights
from fssam.tools.weights import main

TINY = {k: v for k, v in TINY_SIZES.items() if k != "grid"}


@pytest.fixture
def tiny_checks(monkeypatch):
    """Check placed files against tiny models (the real files hold the release's sizes)."""
    monkeypatch.setattr(hmnet_weights, "check", functools.partial(hmnet_weights.check, sizes=TINY))


def place(dest, name: str, obj) -> None:
    path = dest / hmnet_weights.RELEASE_FILES[name].relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def test_list_names_every_file_its_page_and_that_nothing_downloads(capsys, tmp_path):
    assert main(["--list", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sam2_hiera_small.pt" in out  # FSSAM's table is still listed
    assert "serve no direct downloads" in out
    assert hmnet_weights.HMNET_PAGE in out and hmnet_weights.BAM_PAGE in out
    assert len(hmnet_weights.RELEASE_FILES) == 2 + 16 + 32
    for name, entry in hmnet_weights.RELEASE_FILES.items():
        assert f"{name} " in out and entry.relpath in out
    assert "hmnet/exp/coco/HMNetAMP/split3/vgg/snapshot/best_5shot.pth" in out
    assert "hmnet/initmodel/PSPNet/coco/split2/resnet50/best.pth" in out


def test_asking_to_download_one_says_where_to_get_it(tmp_path, caplog):
    assert main(["--dest", str(tmp_path), "--only", "hmnet_pascal_split1_vgg_5shot"]) == 1
    assert hmnet_weights.HMNET_PAGE in caplog.text and "no direct downloads" in caplog.text
    assert "exp/pascal/HMNet/split1/vgg/snapshot/best_5shot.pth" in caplog.text
    assert not any(tmp_path.iterdir())


def test_verify_checks_placed_files_against_their_models(tmp_path, caplog, tiny_checks):
    caplog.set_level(logging.INFO)
    psp = PSPNet(num_base_classes=60, **{k: TINY[k] for k in ("backbone_width", "head_dim")})
    place(tmp_path, "bam_coco_split2_resnet50",
          {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in psp.state_dict().items()},
           "optimizer": {}})
    hmnet = HMNet(backbone="vgg", shot=5, **TINY).state_dict()
    place(tmp_path, "hmnet_pascal_split0_vgg_5shot",
          {"epoch": 1, "state_dict": hmnet, "optimizer": {}, "optimizer_swin": {}})
    assert main(["--dest", str(tmp_path), "--verify"]) == 0   # every placed file
    assert "bam_coco_split2_resnet50" in caplog.text and "fit" in caplog.text

    del hmnet["cls_merge.weight"]
    place(tmp_path, "hmnet_pascal_split0_vgg_5shot", {"state_dict": hmnet})
    place(tmp_path, "bam_pascal_split0_resnet50",            # a COCO base learner (61 classes)
          {"state_dict": psp.state_dict()})
    caplog.clear()
    assert main(["--dest", str(tmp_path), "--verify"]) == 1
    assert "missing keys ['cls_merge.weight']" in caplog.text
    assert "cls.4.weight: file (61, 16, 1, 1), model (16, 16, 1, 1)" in caplog.text
    assert "split0/vgg/snapshot/best_5shot.pth" in caplog.text


def test_verify_of_a_named_file_missing_or_unsafe(tmp_path, caplog, tiny_checks):
    assert main(["--dest", str(tmp_path), "--verify", "--only", "hmnet_imagenet_vgg"]) == 1
    assert "hmnet/initmodel/vgg16_bn.pth is missing" in caplog.text
    path = tmp_path / hmnet_weights.RELEASE_FILES["hmnet_imagenet_vgg"].relpath
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        pickle.dump({"features.0.weight": object()}, f, protocol=2)
    caplog.clear()
    assert main(["--dest", str(tmp_path), "--verify", "--only", "hmnet_imagenet_vgg"]) == 1
    assert "weights_only=True" in caplog.text
