"""Synthetic datasets: layouts, label values, determinism, eligibility per fold, speed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.tools.toy import (
    META_FILE, MIN_ELIGIBLE_PIXELS, eligible_counts, make_toy_coco, make_toy_pascal,
)
from fssam.tools.toy_draw import SHAPES, class_table, shape_mask

from ..conftest import script_module

REPO = Path(__file__).resolve().parents[2]


def _novel_sets(layout: str) -> dict[str, set[int]]:
    """Novel classes of every fold, written out here independently of fssam.data.folds."""
    if layout == "pascal":
        return {f"fold{i}": set(range(5 * i + 1, 5 * i + 6)) for i in range(4)}
    sets = {f"interleaved{i}": {4 * k + i + 1 for k in range(20)} for i in range(4)}
    sets.update({f"contiguous{i}": set(range(20 * i + 1, 20 * i + 21)) for i in range(4)})
    return sets


def _read_label(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert label is not None and label.ndim == 2 and label.dtype == np.uint8, path
    return label


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _shared_toy(factory: pytest.TempPathFactory, layout: str) -> tuple[Path, dict]:
    """Default toy dataset generated once per test session, shared by xdist workers."""
    shared = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # common to the xdist workers of this run only
    root = shared / f"toy_{layout}_default"
    with open(shared / f"toy_{layout}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker writes, the others wait
        if not (root / "done").is_file():
            make = make_toy_pascal if layout == "pascal" else make_toy_coco
            make(root, workers=2)
            (root / "done").touch()
    return root, json.loads((root / META_FILE).read_text())


@pytest.fixture(scope="session")
def pascal_toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _shared_toy(tmp_path_factory, "pascal")


@pytest.fixture(scope="session")
def coco_toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _shared_toy(tmp_path_factory, "coco")


def _pascal_pairs(root: Path) -> dict[str, list[tuple[Path, Path]]]:
    voc = root / "VOC2012"
    out = {}
    for split in ("train", "val"):
        ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        out[split] = [(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClassAug" / f"{i}.png")
                      for i in ids]
    return out


def _coco_pairs(root: Path) -> dict[str, list[tuple[Path, Path]]]:
    return {split: [(root / split / f"{p.stem}.jpg", p)
                    for p in sorted((root / "annotations" / split).glob("*.png"))]
            for split in ("train2014", "val2014")}


def test_pascal_layout(pascal_toy: tuple[Path, dict]) -> None:
    root, meta = pascal_toy
    voc = root / "VOC2012"
    pairs = _pascal_pairs(root)
    train_ids = {p.stem for p, _ in pairs["train"]}
    val_ids = {p.stem for p, _ in pairs["val"]}
    assert len(train_ids) == 260 and len(val_ids) == 140 and not train_ids & val_ids
    assert {p.stem for p in (voc / "JPEGImages").glob("*.jpg")} == train_ids | val_ids
    assert {p.stem for p in (voc / "SegmentationClassAug").glob("*.png")} == train_ids | val_ids
    assert meta["layout"] == "pascal" and meta["num_classes"] == 20 and len(meta["classes"]) == 20
    shapes = set()
    for image_path, label_path in pairs["train"][:40] + pairs["val"][:40]:
        image = cv2.imread(str(image_path))
        assert image.shape[:2] == _read_label(label_path).shape
        assert 160 <= image.shape[0] <= 256 and 160 <= image.shape[1] <= 256
        shapes.add(image.shape[:2])
    assert any(h != w for h, w in shapes)


def test_coco_layout(coco_toy: tuple[Path, dict]) -> None:
    root, meta = coco_toy
    pairs = _coco_pairs(root)
    assert len(pairs["train2014"]) == 780 and len(pairs["val2014"]) == 420
    for split, items in pairs.items():
        assert all(image.is_file() for image, _ in items)
        assert {p.stem for p in (root / split).glob("*.jpg")} == set(meta["images"][split])
        assert all(p.name.startswith(f"COCO_{split}_") for _, p in items)


@pytest.mark.parametrize("layout", ["pascal", "coco"])
def test_labels_hold_only_valid_values(layout: str, request: pytest.FixtureRequest) -> None:
    root, meta = request.getfixturevalue(f"{layout}_toy")
    num_classes = meta["num_classes"]
    pairs = _pascal_pairs(root) if layout == "pascal" else _coco_pairs(root)
    objects = []
    for split, items in pairs.items():
        for _, label_path in items:
            label = _read_label(label_path)
            counts = np.bincount(label.ravel(), minlength=256)
            values = set(np.flatnonzero(counts).tolist())
            assert values <= set(range(num_classes + 1)) | {255}, label_path
            assert {0, 255} <= values, label_path  # background and ignore bands
            pixels = {str(v): int(counts[v]) for v in sorted(values - {0, 255})}
            assert meta["images"][split][label_path.stem] == pixels
            assert min(pixels.values()) >= MIN_ELIGIBLE_PIXELS  # every object is eligible
            objects.append(len(pixels))
    assert min(objects) >= 1 and np.mean(objects) >= 2.0


@pytest.mark.parametrize("layout", ["pascal", "coco"])
def test_every_class_has_enough_eligible_images_in_every_fold(
    layout: str, request: pytest.FixtureRequest
) -> None:
    _, meta = request.getfixturevalue(f"{layout}_toy")
    train_split, val_split = ("train", "val") if layout == "pascal" else ("train2014", "val2014")
    all_classes = set(range(1, meta["num_classes"] + 1))
    for fold, novel in _novel_sets(layout).items():
        base = all_classes - novel
        train = {c: 0 for c in base}
        for pixels in meta["images"][train_split].values():
            if {int(c) for c in pixels} <= base:  # training keeps all-base images only
                for c, n in pixels.items():
                    train[int(c)] += n >= MIN_ELIGIBLE_PIXELS
        val = {c: 0 for c in novel}
        for pixels in meta["images"][val_split].values():
            for c, n in pixels.items():
                if int(c) in novel:
                    val[int(c)] += n >= MIN_ELIGIBLE_PIXELS
        assert min(train.values()) >= 12, (fold, train)
        assert min(val.values()) >= 12, (fold, val)
    counts = eligible_counts(meta)
    assert all(min(c.values()) >= 12 for c in counts.values())


def test_deterministic_by_seed_whatever_the_workers(tmp_path: Path) -> None:
    make_toy_pascal(tmp_path / "a", num_images=24, seed=3, workers=0)
    make_toy_pascal(tmp_path / "b", num_images=24, seed=3, workers=2)
    make_toy_pascal(tmp_path / "c", num_images=24, seed=4, workers=0)
    a, b, c = (_tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_small_dataset_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_toy_coco(tmp_path, num_images=40, workers=1)
    assert time.perf_counter() - start < 20.0
    assert len(list((tmp_path / "annotations" / "val2014").glob("*.png"))) == 14


def test_classes_are_distinct_and_drawable() -> None:
    for n in (20, 80):
        table = class_table(n)
        assert len(set(table)) == n
        assert len({(t.shape, t.colour) for t in table}) == n
    assert {t.shape for t in class_table(20)} == set(SHAPES)
    for shape in SHAPES:
        mask = shape_mask(shape, (100, 100), (50, 50), 30, 10.0, 1.0)
        assert 0.3 < mask.sum() / (60 * 60) < 1.0, shape
    with pytest.raises(ValueError):
        class_table(81)


def test_cli_writes_the_requested_layout(tmp_path: Path) -> None:
    module = script_module(REPO / "scripts" / "make_toy_dataset.py")
    module.main(["--root", str(tmp_path), "--layout", "pascal", "--images", "10", "--seed", "1",
                 "--size", "170", "200", "--workers", "0"])
    ids = (tmp_path / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(ids) == 4
    label = _read_label(tmp_path / "VOC2012" / "SegmentationClassAug" / f"{ids[0]}.png")
    assert 170 <= min(label.shape) and max(label.shape) <= 200


def test_rewrite_replaces_a_toy_dataset_and_refuses_other_data(tmp_path: Path) -> None:
    make_toy_pascal(tmp_path / "toy", num_images=12, workers=0)
    make_toy_pascal(tmp_path / "toy", num_images=6, workers=0)
    voc = tmp_path / "toy" / "VOC2012"
    assert len(list((voc / "JPEGImages").iterdir())) == 6
    assert len(list((voc / "SegmentationClassAug").iterdir())) == 6
    real = tmp_path / "real" / "VOC2012" / "JPEGImages"
    real.mkdir(parents=True)
    (real / "2007_000032.jpg").write_bytes(b"not a toy image")
    with pytest.raises(FileExistsError, match="not a toy dataset"):
        make_toy_pascal(tmp_path / "real", num_images=6, workers=0)
    assert (real / "2007_000032.jpg").read_bytes() == b"not a toy image"


@pytest.mark.parametrize(("layout", "coco_folds"), [("pascal", "interleaved"),
                                                    ("coco", "interleaved"),
                                                    ("coco", "contiguous")])
def test_real_list_builders_and_loader_read_it(layout: str, coco_folds: str,
                                               request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    from fssam.data import build_dataset
    from fssam.data.sources import build_image_list

    root, meta = request.getfixturevalue(f"{layout}_toy")
    novel = _novel_sets(layout)[("fold0" if layout == "pascal" else f"{coco_folds}0")]
    train_split, val_split = ("train", "val") if layout == "pascal" else ("train2014", "val2014")
    base = set(range(1, meta["num_classes"] + 1)) - novel
    expected = {
        "train": sum({int(c) for c in px} <= base for px in meta["images"][train_split].values()),
        "val": sum(bool({int(c) for c in px} & novel) for px in meta["images"][val_split].values()),
    }
    for mode, count in expected.items():
        records = build_image_list(dataset=layout, root=str(root), fold=0, mode=mode,
                                   coco_folds=coco_folds, train_list="all",
                                   cache_dir=str(tmp_path))
        assert len(records) == count
    dataset = build_dataset(dataset=layout, root=str(root), fold=0, shot=5, mode="val",
                            image_size=128, num_episodes=4, coco_folds=coco_folds,
                            cache_dir=str(tmp_path))
    item = dataset[3]
    assert int(item["class_id"]) in novel
    assert item["support_masks"].shape == (5, 128, 128)
    assert set(item["query_label"].unique().tolist()) == {0, 1, 255}
