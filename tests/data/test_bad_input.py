"""Each bad input stops with an error naming the file, class or setting."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data import build_dataset
from fssam.data.folds import novel_classes


def make(root: Path, cache: Path, **kwargs):
    settings = {"dataset": "pascal", "fold": 0, "shot": 1, "mode": "val", "image_size": 32,
                "num_episodes": 20, **kwargs}
    return build_dataset(root=str(root), cache_dir=str(cache), **settings)


def load_all(dataset) -> None:
    for index in range(len(dataset)):
        dataset[index]


def test_missing_image(fresh_pascal: Path, tmp_path: Path) -> None:
    image = fresh_pascal / "VOC2012" / "JPEGImages" / "2007_000005.jpg"
    image.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(image))):
        make(fresh_pascal, tmp_path)


def test_unreadable_image(fresh_pascal: Path, tmp_path: Path) -> None:
    image = fresh_pascal / "VOC2012" / "JPEGImages" / "2007_000005.jpg"
    image.write_bytes(b"not a jpeg")
    dataset = make(fresh_pascal, tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"cannot read image {image}")):
        load_all(dataset)


def test_missing_label(fresh_pascal: Path, tmp_path: Path) -> None:
    label = fresh_pascal / "SegmentationClassAug" / "2007_000003.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(label))):
        make(fresh_pascal, tmp_path)


def test_unreadable_label(fresh_pascal: Path, tmp_path: Path) -> None:
    label = fresh_pascal / "SegmentationClassAug" / "2007_000003.png"
    label.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=re.escape(f"cannot read label {label}")):
        make(fresh_pascal, tmp_path)


def test_label_value_out_of_range(fresh_pascal: Path, tmp_path: Path) -> None:
    label = fresh_pascal / "SegmentationClassAug" / "2007_000003.png"
    assert cv2.imwrite(str(label), np.full((96, 128), 37, np.uint8))
    with pytest.raises(ValueError, match=re.escape(f"label {label} has values [37] outside 0..20")):
        make(fresh_pascal, tmp_path)


def test_size_mismatch(fresh_pascal: Path, tmp_path: Path) -> None:
    image = fresh_pascal / "VOC2012" / "JPEGImages" / "2007_000006.jpg"
    label = fresh_pascal / "SegmentationClassAug" / "2007_000006.png"
    assert cv2.imwrite(str(image), np.zeros((10, 20, 3), np.uint8))
    dataset = make(fresh_pascal, tmp_path)
    expected = f"size mismatch: image {image} is 20x10 but label {label} is 128x96"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_all(dataset)


def test_class_with_too_few_images(pascal_root: Path, tmp_path: Path) -> None:
    # fold 0 val: class 1 has 4 eligible images, class 2 has 3; 2007_000006 holds class 2 only
    make(pascal_root, tmp_path, shot=2)
    with pytest.raises(ValueError, match=r"no episode for .*2007_000006.png: .* too few other "
                                         r"images .* shot=3 .*\{2: 2\}"):
        make(pascal_root, tmp_path, shot=3)


def test_empty_list(pascal_root: Path, tmp_path: Path) -> None:
    list_file = tmp_path / "train.txt"
    list_file.write_text("\n\n")
    with pytest.raises(ValueError, match=re.escape(f"empty list file: {list_file}")):
        make(pascal_root, tmp_path, mode="train", train_list=str(list_file))


def test_no_eligible_image(pascal_root: Path, tmp_path: Path) -> None:
    # fold 1 (novel 6..10): every training image holds class 6, 7 or 8
    with pytest.raises(ValueError, match="empty train list: no eligible image for pascal fold 1"):
        make(pascal_root, tmp_path, mode="train", fold=1, train_list="all")


def test_unknown_dataset(pascal_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'voc'"):
        make(pascal_root, tmp_path, dataset="voc")


def test_unknown_fold(pascal_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fold 5"):
        make(pascal_root, tmp_path, fold=5)
    with pytest.raises(ValueError, match="unknown fold 4 for coco"):
        make(pascal_root, tmp_path, dataset="coco", fold=4)
    # PASCAL's fold 4 (every class) trains only: its evaluation list has no class
    with pytest.raises(ValueError, match="empty val list"):
        make(pascal_root, tmp_path, fold=4)


def test_unknown_coco_folds() -> None:
    with pytest.raises(ValueError, match="unknown coco_folds 'blocks'"):
        novel_classes("coco", 0, "blocks")


def test_unknown_mode_and_annotation(pascal_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown mode 'test'"):
        make(pascal_root, tmp_path, mode="test")
    with pytest.raises(ValueError, match="unknown support_annotation 'polygon'"):
        make(pascal_root, tmp_path, support_annotation="polygon")
    with pytest.raises(ValueError, match="support_annotation=points is for evaluation"):
        make(pascal_root, tmp_path, mode="train", support_annotation="points")


def test_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"dataset root not found: {root}")):
        make(root, tmp_path)
