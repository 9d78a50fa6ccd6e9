"""Tiny hand-made datasets in the PASCAL and COCO layouts.

Every image is 96x128 (H x W) noise; labels hold up to three rectangles and an ignore
band (rows 88..95 = 255). Rectangle kinds: big 50x50 = 2500 px (eligible), exact
32x64 = 2048 px (eligible, the threshold), under = 2047 px and small 20x20 (present
but not eligible). Slot 0 is top-left, slot 1 top-right, slot 2 below slot 0 (small only).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

HEIGHT, WIDTH = 96, 128
SLOTS = ((0, 0), (0, 64), (55, 0))
SIZES = {"big": (50, 50), "exact": (32, 64), "under": (32, 64), "small": (20, 20)}

# PASCAL: fold 0 novel = 1..5. Comments: expected fold-0 lists.
PASCAL_TRAIN = {  # in SegmentationClassAug, not in val.txt
    "2008_000001": [(6, "big")],  # train (6,)
    "2008_000002": [(6, "big"), (7, "big")],  # train (6, 7)
    "2008_000003": [(6, "big"), (1, "small")],  # out: novel class present
    "2008_000004": [(7, "small")],  # out: nothing eligible
    "2008_000005": [(7, "exact")],  # train (7,): exactly 2048 px
    "2008_000006": [(6, "big"), (8, "under")],  # train (6,): 8 present, not eligible
    "2008_000007": [(6, "big")],  # train (6,)
    "2008_000008": [(7, "big")],  # train (7,)
}
PASCAL_VAL = {  # val.txt (also in SegmentationClassAug)
    "2007_000001": [(1, "big")],  # val (1,)
    "2007_000002": [(1, "big"), (6, "big")],  # val (1,)
    "2007_000003": [(1, "big"), (2, "under")],  # val (1,)
    "2007_000004": [(6, "big")],  # out: no novel class
    "2007_000005": [(2, "big"), (1, "big")],  # val (1, 2)
    "2007_000006": [(2, "big")],  # val (2,)
    "2007_000007": [(2, "big"), (3, "small")],  # val (2,)
}

# COCO: interleaved fold 0 novel = {1, 5, 9, ..., 77}; contiguous fold 0 = 1..20.
COCO_TRAIN = {
    "COCO_train2014_000000000001": [(2, "big")],
    "COCO_train2014_000000000002": [(2, "big"), (3, "big")],
    "COCO_train2014_000000000003": [(2, "big"), (1, "small")],
    "COCO_train2014_000000000004": [(3, "big")],
    "COCO_train2014_000000000005": [(2, "big"), (21, "big")],
}
COCO_VAL = {
    "COCO_val2014_000000000001": [(1, "big")],
    "COCO_val2014_000000000002": [(1, "big"), (5, "big")],
    "COCO_val2014_000000000003": [(2, "big")],
    "COCO_val2014_000000000004": [(5, "big")],
    "COCO_val2014_000000000005": [(21, "big"), (1, "small")],
    "COCO_val2014_000000000006": [(1, "big"), (21, "big")],
}


def draw_label(objects: list[tuple[int, str]]) -> np.ndarray:
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[88:, :] = 255
    for (class_id, kind), (top, left) in zip(objects, SLOTS):
        h, w = SIZES[kind]
        label[top:top + h, left:left + w] = class_id
        if kind == "under":
            label[top, left] = 0
    return label


def write_pair(image_path: Path, label_path: Path, objects: list[tuple[int, str]],
               seed: int) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    assert cv2.imwrite(str(image_path), image)
    assert cv2.imwrite(str(label_path), draw_label(objects))


def make_pascal(root: Path) -> Path:
    voc = root / "VOC2012"
    for seed, (name, objects) in enumerate({**PASCAL_TRAIN, **PASCAL_VAL}.items()):
        write_pair(voc / "JPEGImages" / f"{name}.jpg",
                   root / "SegmentationClassAug" / f"{name}.png", objects, seed)
    val_txt = voc / "ImageSets" / "Segmentation" / "val.txt"
    val_txt.parent.mkdir(parents=True)
    val_txt.write_text("".join(f"{name}\n" for name in PASCAL_VAL))
    return root


def make_coco(root: Path) -> Path:
    for split, items in (("train2014", COCO_TRAIN), ("val2014", COCO_VAL)):
        for seed, (name, objects) in enumerate(items.items()):
            write_pair(root / split / f"{name}.jpg", root / "annotations" / split / f"{name}.png",
                       objects, seed)
    return root


@pytest.fixture(scope="session")
def pascal_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only tiny PASCAL dataset shared by the tests."""
    return make_pascal(tmp_path_factory.mktemp("pascal"))


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only tiny COCO dataset shared by the tests."""
    return make_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture
def fresh_pascal(tmp_path: Path) -> Path:
    """A tiny PASCAL dataset of the test's own, free to damage."""
    return make_pascal(tmp_path / "pascal")


def cycling_replay(by_class: dict[int, list[str]], classes: list[int], shot: int, count: int
                   ) -> list[tuple[int, str, tuple[str, ...]]]:
    """PATNet's and Matcher's test loop, written from their descriptions: the global NumPy
    generator seeded with 0, episode i of class ``classes[i mod C]``, the query and each
    support ``np.random.choice(names, 1, replace=False)`` over the class's image names (a
    list), a support equal to the query drawn again, repeats kept."""
    np.random.seed(0)
    out = []
    for idx in range(count):
        class_id = classes[idx % len(classes)]
        names = by_class[class_id]
        query = np.random.choice(names, 1, replace=False)[0]
        supports: list[str] = []
        while True:
            support = np.random.choice(names, 1, replace=False)[0]
            if support != query:
                supports.append(str(support))
            if len(supports) == shot:
                break
        out.append((class_id, str(query), tuple(supports)))
    return out
