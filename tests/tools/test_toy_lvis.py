"""The synthetic LVIS-92i (fssam.tools.toy_lvis): real source format, determinism, what
Matcher's filter keeps at one and five shots, and make_toy_dataset.py --layout lvis."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data.benchmarks import lvis
from fssam.tools import make_toy_dataset
from fssam.tools.toy import META_FILE
from fssam.tools.toy_lvis import make_toy_lvis


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The toy at seed 0, twice: once fresh, once over a toy written at seed 1."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    make_toy_lvis(a, workers=1)
    make_toy_lvis(b, seed=1, workers=2)
    make_toy_lvis(b, workers=2)
    return a, b


def _pairs(root: Path, split: str) -> list[tuple[str, str]]:
    lines = (root / lvis.LIST_FILES[split]).read_text().splitlines()
    return [tuple(line.split(" ")) for line in lines]


def _category(mask: str) -> int:
    return int(mask.split("/")[2])  # masks/<split>/<category>/<stem>.png


def test_same_arguments_same_bytes(roots: tuple[Path, Path]) -> None:
    a, b = roots
    for name in (*lvis.LIST_FILES.values(), lvis.CATEGORY_FILE, "lvis_v1_train.json",
                 "lvis_v1_val.json", META_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for path in [f for f in files if f.suffix in (".png", ".jpg")][::17]:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path


def test_val_list_feeds_ten_folds_at_one_and_five_shots(roots: tuple[Path, Path]) -> None:
    counts = Counter(_category(mask) for _, mask in _pairs(roots[0], "val"))
    for shot in (1, 5):
        kept = [c for c, n in counts.items() if n > shot]
        assert len(kept) >= 10 and len(kept) < len(counts), shot  # some filtered out
        folds = [lvis.fold_of(dict(counts), fold, shot) for fold in range(10)]
        assert sorted(c for fold in folds for c in fold) == sorted(kept[:len(kept) // 10 * 10])
    assert {1, 2, 5} <= set(counts.values())  # on the edges of the filter at both shots
    train = {_category(mask) for _, mask in _pairs(roots[0], "train")}
    assert train & set(counts) and train - set(counts)  # shared and train-only categories


def test_sources_are_in_the_lvis_v1_format(roots: tuple[Path, Path]) -> None:
    root = roots[0]
    folders, per_image, per_pair = Counter(), {}, Counter()
    for split in ("train", "val"):
        data = json.loads((root / f"lvis_v1_{split}.json").read_text())
        assert {"images", "annotations", "categories"} <= data.keys()
        images = {i["id"]: i for i in data["images"]}
        for image in data["images"]:
            folder, name = image["coco_url"].split("/")[-2:]
            folders[split, folder] += 1
            assert name == f"{image['id']:012d}.jpg"
            shape = cv2.imread(str(root / "coco" / folder / name)).shape
            assert shape[:2] == (image["height"], image["width"])
            assert 96 <= min(shape[:2]) and max(shape[:2]) <= 160
        for ann in data["annotations"]:
            assert ann["image_id"] in images and {"id", "area", "bbox"} <= ann.keys()
            per_image.setdefault((split, ann["image_id"]), set()).add(ann["category_id"])
            per_pair[split, ann["image_id"], ann["category_id"]] += 1
    assert folders["val", "train2017"] and folders["val", "val2017"]
    assert not folders["train", "val2017"]
    assert any(len(c) == 2 for c in per_image.values())  # two categories in one image
    assert any(n >= 2 for n in per_pair.values())  # two instances: the mask is a union


def test_segmentation_forms(roots: tuple[Path, Path]) -> None:
    data = json.loads((roots[0] / "lvis_v1_val.json").read_text())
    segs = [a["segmentation"] for a in data["annotations"]]
    assert any(isinstance(s, list) for s in segs)
    assert any(isinstance(s, dict) and isinstance(s["counts"], str) for s in segs)
    assert any(isinstance(s, dict) and isinstance(s["counts"], list) for s in segs)


def test_list_order_and_masks(roots: tuple[Path, Path]) -> None:
    root = roots[0]
    data = json.loads((root / "lvis_v1_val.json").read_text())
    urls = {i["id"]: "coco/" + "/".join(i["coco_url"].split("/")[-2:]) for i in data["images"]}
    first: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        images = first.setdefault(ann["category_id"], [])
        if urls[ann["image_id"]] not in images:
            images.append(urls[ann["image_id"]])
    pairs = _pairs(root, "val")
    expected = [image for _, images in sorted(first.items()) for image in images]
    assert [image for image, _ in pairs] == expected
    for image, mask in pairs[::11]:
        label = cv2.imread(str(root / mask), cv2.IMREAD_UNCHANGED)
        assert label.shape == cv2.imread(str(root / image)).shape[:2]
        assert set(np.unique(label)) == {0, 255}


def test_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a toy dataset"):
        make_toy_lvis(tmp_path)
    assert not (tmp_path / "coco").exists()


def test_make_toy_dataset_layout_lvis(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(make_toy_dataset, "make_toy_lvis",
                        lambda root, **kwargs: calls.append((root, kwargs)))
    make_toy_dataset.main(["--root", "somewhere", "--layout", "lvis", "--seed", "4"])
    assert calls == [("somewhere", {"seed": 4, "workers": None})]
