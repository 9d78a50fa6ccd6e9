"""Eligibility, list building and list caching on the tiny hand-made datasets."""

from pathlib import Path

import pytest

from fssam.data import sources
from fssam.data.sources import build_image_list


def summary(records: list[sources.ImageRecord]) -> dict[str, tuple[int, ...]]:
    return {Path(r.image).stem: r.classes for r in records}


def build(root: Path, cache: Path, **kwargs) -> list[sources.ImageRecord]:
    settings = {"dataset": "pascal", "fold": 0, "mode": "train", "train_list": "all", **kwargs}
    return build_image_list(root=str(root), cache_dir=str(cache), workers=2, **settings)


def test_pascal_train_list(pascal_root: Path, tmp_path: Path) -> None:
    records = build(pascal_root, tmp_path)
    assert summary(records) == {"2008_000001": (6,), "2008_000002": (6, 7), "2008_000005": (7,),
                                "2008_000006": (6,), "2008_000007": (6,), "2008_000008": (7,)}
    first = records[0]
    assert first.image == str(pascal_root / "VOC2012" / "JPEGImages" / "2008_000001.jpg")
    assert first.label == str(pascal_root / "SegmentationClassAug" / "2008_000001.png")


def test_pascal_val_list(pascal_root: Path, tmp_path: Path) -> None:
    records = build(pascal_root, tmp_path, mode="val")
    assert summary(records) == {"2007_000001": (1,), "2007_000002": (1,), "2007_000003": (1,),
                                "2007_000005": (1, 2), "2007_000006": (2,), "2007_000007": (2,)}
    assert summary(build(pascal_root, tmp_path, mode="val", fold=1)) == {
        "2007_000002": (6,), "2007_000004": (6,)}


def test_pascal_explicit_train_list(pascal_root: Path, tmp_path: Path) -> None:
    list_file = tmp_path / "train.txt"
    list_file.write_text("VOC2012/JPEGImages/2008_000002.jpg SegmentationClassAug/2008_000002.png\n"
                         "JPEGImages/2008_000003.jpg SegmentationClassAug/2008_000003.png\n"
                         "\n"
                         "JPEGImages/2007_000006.jpg SegmentationClassAug/2007_000006.png\n")
    records = build(pascal_root, tmp_path, fold=1, train_list=str(list_file))
    # fold 1: novel 6..10, so 2008_000002 (6, 7) and 2008_000003 (6, 1) drop out
    assert summary(records) == {"2007_000006": (2,)}
    assert records[0].image == str(pascal_root / "VOC2012" / "JPEGImages" / "2007_000006.jpg")


def test_coco_lists_both_splits(coco_root: Path, tmp_path: Path) -> None:
    train = build(coco_root, tmp_path, dataset="coco")
    assert summary(train) == {"COCO_train2014_000000000001": (2,),
                              "COCO_train2014_000000000002": (2, 3),
                              "COCO_train2014_000000000004": (3,)}
    assert train[0].image == str(coco_root / "train2014" / "COCO_train2014_000000000001.jpg")
    assert train[0].label == str(coco_root / "annotations" / "train2014"
                                 / "COCO_train2014_000000000001.png")
    val = build(coco_root, tmp_path, dataset="coco", mode="val")
    assert summary(val) == {"COCO_val2014_000000000001": (1,), "COCO_val2014_000000000002": (1, 5),
                            "COCO_val2014_000000000004": (5,), "COCO_val2014_000000000005": (21,),
                            "COCO_val2014_000000000006": (1, 21)}
    contiguous = build(coco_root, tmp_path, dataset="coco", mode="val", coco_folds="contiguous")
    assert summary(contiguous) == {"COCO_val2014_000000000001": (1,),
                                   "COCO_val2014_000000000002": (1, 5),
                                   "COCO_val2014_000000000003": (2,),
                                   "COCO_val2014_000000000004": (5,),
                                   "COCO_val2014_000000000006": (1,)}


def test_list_cache_reused_and_rebuilt(pascal_root: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[tuple[str, ...]] = []
    real_scan = sources._scan_labels

    def counting_scan(pairs, *args, **kwargs):
        scans.append(tuple(label for _, label in pairs))
        return real_scan(pairs, *args, **kwargs)

    monkeypatch.setattr(sources, "_scan_labels", counting_scan)
    cache = tmp_path / "cache"
    list_file = tmp_path / "train.txt"
    list_file.write_text("JPEGImages/2008_000001.jpg SegmentationClassAug/2008_000001.png\n")
    other_root = tmp_path / "pascal_copy"
    other_root.symlink_to(pascal_root, target_is_directory=True)

    first = build(pascal_root, cache)
    assert build(pascal_root, cache) == first and len(scans) == 1  # cached
    assert len(list(cache.glob("pascal_fold0_train_*.json"))) == 1
    build(pascal_root, cache, fold=1, mode="val")  # fold and mode change
    build(pascal_root, cache, mode="val")  # mode change
    build(other_root, cache, mode="val")  # root change
    assert len(scans) == 4
    assert len(build(pascal_root, cache, train_list=str(list_file))) == 1  # list file
    list_file.write_text("JPEGImages/2008_000002.jpg SegmentationClassAug/2008_000002.png\n")
    assert summary(build(pascal_root, cache, train_list=str(list_file))) == {"2008_000002": (6, 7)}
    assert len(scans) == 6
    build(pascal_root, cache, mode="val")  # everything still cached
    build(pascal_root, cache, train_list=str(list_file))
    assert len(scans) == 6 and len(list(cache.glob("*.json"))) == 6
    build(pascal_root, cache, mode="val", rebuild=True)  # read again, cache refreshed
    assert len(scans) == 7 and len(list(cache.glob("*.json"))) == 6


def test_pascal_labels_under_voc2012(fresh_pascal: Path, tmp_path: Path) -> None:
    labels = fresh_pascal / "VOC2012" / "SegmentationClassAug"
    (fresh_pascal / "SegmentationClassAug").rename(labels)
    records = build(fresh_pascal, tmp_path, mode="val")
    assert len(records) == 6 and records[0].label == str(labels / "2007_000001.png")
