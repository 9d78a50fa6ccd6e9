"""The base-class data of a base learner's stage: lists, label remapping, the letterbox,
determinism; and the base-class index of episodic training items."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fssam.data import build_dataset
from fssam.data.folds import base_classes
from fssam.data.semantic import base_label_table, build_base_dataset, remap_label
from fssam.data.sources import read_label
from fssam.data.transforms import letterbox, letterbox_size

from .conftest import PASCAL_TRAIN, PASCAL_VAL, draw_label


def make(root: Path, mode: str, **kwargs):
    settings = {"dataset": "pascal", "fold": 0, "mode": mode, "image_size": 64, "seed": 3,
                "train_list": "all", **kwargs}
    return build_base_dataset(root=str(root), **settings)


def test_every_listed_image_novel_classes_included(pascal_root: Path) -> None:
    train, val = make(pascal_root, "train"), make(pascal_root, "val")
    assert sorted(Path(p).stem for p, _ in train.pairs) == sorted(PASCAL_TRAIN)
    assert [Path(p).stem for p, _ in val.pairs] == list(PASCAL_VAL)
    assert train.num_base_classes == 15


def test_labels_base_rank_plus_one_novel_background_ignore_kept() -> None:
    table = base_label_table(base_classes("pascal", 1), 20)  # fold 1: novel 6..10
    label = np.array([[0, 1, 5, 6], [10, 11, 20, 255]], np.uint8)
    assert remap_label(label, table, "x.png").tolist() == [[0, 1, 5, 0], [0, 6, 15, 255]]
    with pytest.raises(ValueError, match=r"label bad\.png has values \[21, 254\] outside "
                                         r"0\.\.20 and 255"):
        remap_label(np.array([[21, 254, 3]], np.uint8), table, "bad.png")


def test_training_item_is_an_augmented_crop_of_the_remapped_label(pascal_root: Path) -> None:
    dataset = make(pascal_root, "train", scale_range=(1.0, 1.0))
    names = [Path(p).stem for p, _ in dataset.pairs]
    index = names.index("2008_000003")  # class 6 (base rank 1) and class 1 (novel)
    item = dataset[index]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["label"].shape == (64, 64) and item["label"].dtype == torch.int64
    assert set(item["label"].unique().tolist()) <= {0, 1, 255}
    # Same (seed, epoch, index), same item; another epoch draws another crop.
    assert torch.equal(dataset[index]["image"], item["image"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[index]["image"], item["image"])


def test_letterbox_sizes_follow_bams_rule() -> None:
    assert letterbox_size(375, 500, 417) == (312, 416)  # long side 417, floored to 416
    assert letterbox_size(500, 375, 417) == (416, 312)
    assert letterbox_size(417, 417, 417) == (416, 416)
    assert letterbox_size(300, 200, 417) == (416, 272)  # smaller images are upscaled
    assert letterbox_size(1000, 12, 417) == (416, 8)  # never below 8


def test_letterbox_pads_bottom_right_image_zero_label_ignore() -> None:
    image = np.full((96, 128, 3), 200.0, np.float32)
    label = draw_label([(6, "big")])
    out_image, out_label = letterbox(image, label, 64)
    assert out_image.shape == (64, 64, 3) and out_label.shape == (64, 64)
    assert (out_image[:48] == 200).all() and (out_image[48:] == 0).all()
    expected = cv2.resize(label, (64, 48), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(out_label[:48], expected) and (out_label[48:] == 255).all()


def test_validation_item_is_the_letterboxed_remapped_label(pascal_root: Path) -> None:
    dataset = make(pascal_root, "val")
    image_path, label_path = dataset.pairs[1]  # classes 1 (novel) and 6 (base rank 1)
    item = dataset[1]
    raw = read_label(label_path)
    remapped = remap_label(raw, dataset.table, label_path)
    assert np.array_equal(item["label"].numpy(), letterbox(np.zeros((*raw.shape, 3), np.float32),
                                                           remapped, 64)[1])
    assert set(item["label"].unique().tolist()) == {0, 1, 255}


def test_missing_image_is_named(fresh_pascal: Path) -> None:
    missing = fresh_pascal / "VOC2012" / "JPEGImages" / "2007_000003.jpg"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match="2007_000003.jpg"):
        make(fresh_pascal, "val")


def test_episodic_training_items_carry_the_base_class_index(pascal_root: Path,
                                                            tmp_path: Path) -> None:
    dataset = build_dataset(dataset="pascal", root=str(pascal_root), fold=0, shot=1,
                            mode="train", image_size=32, seed=3, train_list="all",
                            cache_dir=str(tmp_path))
    base = base_classes("pascal", 0)
    for index in range(len(dataset)):
        item = dataset[index]
        assert base[int(item["base_class_index"])] == int(item["class_id"])
    val = build_dataset(dataset="pascal", root=str(pascal_root), fold=0, shot=1, mode="val",
                        image_size=32, num_episodes=2, cache_dir=str(tmp_path))
    assert "base_class_index" not in val[0]
