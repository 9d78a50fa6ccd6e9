"""The training-list choice: the authors' 5953 PASCAL images by default, every label, or a
list file of the user's; each choice has its own list cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data import build_dataset, sources, train_lists
from fssam.data.sources import build_image_list
from fssam.tools.toy import make_toy_pascal
from fssam.engine.config import compose_config
from fssam.engine.config import dataset_kwargs, validate_config

AUTHORS_FILE = train_lists.LIST_DIR / "pascal_train_voc_sbd.txt"
EXTRA = [f"2099_{i:06d}" for i in range(1, 31)]  # on disk, not in the authors' list
VAL = ["2007_000033", "2007_000042"]


def authors_ids() -> list[str]:
    return AUTHORS_FILE.read_text().split()


def write_label(path: Path, class_id: int) -> None:
    assert cv2.imwrite(str(path), np.full((48, 48), class_id, np.uint8))  # 2304 px: eligible


@pytest.fixture(scope="module")
def full_pascal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every id of the authors' list (class 6), 30 more (class 7) and 2 val images (class 1).

    Images are empty files: list building only checks that they exist."""
    root = tmp_path_factory.mktemp("full_pascal")
    images, labels = root / "VOC2012" / "JPEGImages", root / "SegmentationClassAug"
    images.mkdir(parents=True)
    labels.mkdir()
    templates = tmp_path_factory.mktemp("templates")
    for ids, class_id in ((authors_ids(), 6), (EXTRA, 7), (VAL, 1)):
        write_label(templates / f"{class_id}.png", class_id)
        for i in ids:
            (images / f"{i}.jpg").touch()
            shutil.copyfile(templates / f"{class_id}.png", labels / f"{i}.png")
    val_txt = root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    val_txt.parent.mkdir(parents=True)
    val_txt.write_text("\n".join(VAL) + "\n")
    return root


def stems(records: list[sources.ImageRecord]) -> list[str]:
    return [Path(r.image).stem for r in records]


def test_shipped_list_is_the_authors() -> None:
    ids = authors_ids()
    assert len(ids) == len(set(ids)) == 5953
    assert all(re.fullmatch(r"20\d\d_\d{6}", i) for i in ids)
    assert ids[:2] == ["2008_000008", "2008_000015"]  # the authors' order, not sorted
    chosen = train_lists.resolve_train_list("pascal", None)
    assert chosen.choice == "authors" and Path(chosen.path) == AUTHORS_FILE.resolve()


def test_changed_shipped_list_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tmp_path / AUTHORS_FILE.name
    changed.write_text(AUTHORS_FILE.read_text().replace("2008_000008\n", ""))
    monkeypatch.setattr(train_lists, "LIST_DIR", tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{changed} has SHA-256")):
        train_lists.resolve_train_list("pascal", "authors")


def test_default_run_trains_on_the_authors_images(full_pascal: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", ["dataset=pascal", f"dataset.root={full_pascal}",
                                   f"dataset.cache_dir={tmp_path}", "sam2.image_size=64"])
    validate_config(cfg)
    dataset = build_dataset(**dataset_kwargs(cfg, mode="train"))
    assert len(dataset) == 5953 and stems(dataset.records) == authors_ids()


def test_three_choices_and_their_caches(full_pascal: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    scans = []
    real_scan = sources._scan_labels
    monkeypatch.setattr(sources, "_scan_labels", lambda pairs, *a, **k: scans.append(1) or
                        real_scan(pairs, *a, **k))
    own = tmp_path / "own.txt"  # ids and image/label pairs may mix
    own.write_text(f"{EXTRA[0]}\nJPEGImages/{EXTRA[1]}.jpg SegmentationClassAug/{EXTRA[1]}.png\n"
                   f"2008_000008\n")
    cache = tmp_path / "cache"

    def build(train_list: str | None) -> list[str]:
        return stems(build_image_list(dataset="pascal", root=str(full_pascal), fold=0,
                                      mode="train", train_list=train_list, cache_dir=str(cache)))

    assert build(None) == build("authors") == authors_ids()
    assert build("all") == sorted(authors_ids() + EXTRA)  # every label not in val.txt
    assert build(str(own)) == [EXTRA[0], EXTRA[1], "2008_000008"]
    assert len(scans) == 3 and len(list(cache.glob("pascal_fold0_train_*.json"))) == 3
    assert build("authors") == authors_ids() and build("all") and len(scans) == 3  # cached


def test_toy_config_trains_on_every_label(tmp_path: Path) -> None:
    root = tmp_path / "toy"
    meta = make_toy_pascal(root, num_images=40, workers=1)
    cfg = compose_config("train", ["dataset=toy", f"dataset.root={root}",
                                   f"dataset.cache_dir={tmp_path / 'cache'}"])
    validate_config(cfg)
    kwargs = dataset_kwargs(cfg, mode="train")
    assert kwargs["train_list"] == "all"
    records = build_image_list(**{k: kwargs[k] for k in ("dataset", "root", "fold", "mode",
                                                          "train_list", "cache_dir")})
    assert {Path(r.image).stem for r in records} <= set(meta["images"]["train"])
    with pytest.raises(FileNotFoundError, match="listed images missing; train_list='authors'"):
        build_image_list(**{**{k: kwargs[k] for k in ("dataset", "root", "fold", "mode",
                                                     "cache_dir")}, "train_list": "authors"})


def test_coco_has_no_authors_list(tmp_path: Path) -> None:
    assert train_lists.resolve_train_list("coco", None).choice == "all"
    with pytest.raises(ValueError, match="authors' training list ships for pascal only"):
        train_lists.resolve_train_list("coco", "authors")


def test_bad_list_choices(pascal_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="list file not found: nope.txt"):
        train_lists.resolve_train_list("pascal", "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a b c\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}:1: expected an image id or")):
        build_image_list(dataset="pascal", root=str(pascal_root), fold=0, mode="train",
                         train_list=str(bad), cache_dir=str(tmp_path))
