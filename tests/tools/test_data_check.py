"""The data check on synthetic datasets: a dataset matching its reference counts passes;
each kind of corruption is detected and named; recognisable count patterns are explained."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data import sources
from fssam.tools.data_check.check import CheckSettings, SettingsError, format_report, run_check
from fssam.data.folds import base_classes, novel_classes
from fssam.data.sources import MIN_PIXELS
from fssam.tools.toy import META_FILE, make_toy_coco, make_toy_pascal

VOC = Path("VOC2012")


def reference_from_meta(meta: dict, splits: dict[str, str], dataset: str) -> dict:
    """The counts a faithful list builder gives, computed from the generator's own record."""
    counts = {}
    for fold in range(4):
        for mode, split in splits.items():
            classes = set((base_classes if mode == "train" else novel_classes)(dataset, fold))
            per_class, images = {c: 0 for c in sorted(classes)}, 0
            for pixels in meta["images"][split].values():
                present = {int(c): n for c, n in pixels.items()}
                if mode == "train" and not set(present) <= classes:
                    continue
                eligible = [c for c, n in present.items() if c in classes and n >= MIN_PIXELS]
                images += bool(eligible)
                for c in eligible:
                    per_class[c] += 1
            counts[f"{mode}_fold{fold}"] = {"images": images,
                                            "per_class": {str(c): n for c, n in per_class.items()}}
    return counts


@pytest.fixture(scope="module")
def pascal_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("check_pascal") / "pascal"
    meta = make_toy_pascal(root, num_images=60, workers=1)
    (root / META_FILE).unlink()  # checked as a real dataset
    return root, reference_from_meta(meta, {"train": "train", "val": "val"}, "pascal")


@pytest.fixture
def dataset(pascal_source: tuple[Path, dict], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the dataset, free to damage, and its reference-counts file."""
    source, reference = pascal_source
    root = tmp_path / "pascal"
    shutil.copytree(source, root)
    ref_file = tmp_path / "reference.json"
    ref_file.write_text(json.dumps(reference))
    return root, ref_file


def check(root: Path, ref_file: Path, **kwargs) -> dict:
    settings = {"dataset": "pascal", "root": str(root), "train_list": "all",
                "reference": str(ref_file), "cache_dir": str(ref_file.parent / "cache"),
                "workers": 2, **kwargs}
    return run_check(CheckSettings(**settings))


def first_ids(root: Path, split: str, n: int = 1) -> list[str]:
    return (root / VOC / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()[:n]


def label_path(root: Path, name: str) -> Path:
    return root / VOC / "SegmentationClassAug" / f"{name}.png"


def test_matching_dataset_passes(dataset: tuple[Path, Path]) -> None:
    report = check(*dataset)
    assert report["ok"] and not report["findings"] and report["mismatches"] == 0
    assert len(report["comparisons"]) == 4 * (16 + 6)  # images + 15 base / 5 novel classes
    assert report["labels_checked"] == 60 and not report["synthetic"]
    assert "every count matches" in report["diagnosis"][0]
    text = format_report(report)
    assert text.count("\nfold ") == 4 and "MISMATCH" not in text and "PASS" in text


def test_the_list_builds_of_every_fold_read_each_label_once(dataset: tuple[Path, Path],
                                                             monkeypatch) -> None:
    reads: Counter[str] = Counter()
    class_pixels = sources._class_pixels

    def counted(label_path: str, max_class: int) -> dict[int, int]:
        reads[label_path] += 1
        return class_pixels(label_path, max_class)

    monkeypatch.setattr(sources, "_class_pixels", counted)
    assert check(*dataset)["ok"]
    assert len(reads) == 60 and set(reads.values()) == {1}  # 4 folds x 2 lists, no rereads


def _delete_image(root: Path) -> str:
    name = first_ids(root, "val")[0]
    (root / VOC / "JPEGImages" / f"{name}.jpg").unlink()
    return f"JPEGImages/{name}.jpg"


def _delete_label(root: Path) -> str:
    name = first_ids(root, "val")[0]  # val.txt names it (train_list=all lists labels found)
    label_path(root, name).unlink()
    return f"{name}.png"


def _colour_label(root: Path) -> str:
    name = first_ids(root, "train")[0]
    label = cv2.imread(str(label_path(root, name)), cv2.IMREAD_GRAYSCALE).astype(np.int64)
    colour = np.stack([label * 7 % 256, label * 13 % 256, label], -1).astype(np.uint8)
    assert cv2.imwrite(str(label_path(root, name)), colour)
    return f"{name}.png (mode RGB, colours)"


def _out_of_range(root: Path) -> str:
    name = first_ids(root, "val")[0]
    label = cv2.imread(str(label_path(root, name)), cv2.IMREAD_GRAYSCALE)
    label[:4, :4] = 37
    assert cv2.imwrite(str(label_path(root, name)), label)
    return f"{name}.png (values [37])"


def _size_mismatch(root: Path) -> str:
    name = first_ids(root, "train")[0]
    image = root / VOC / "JPEGImages" / f"{name}.jpg"
    assert cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    return f"{name}.png is "


CORRUPTIONS: dict[str, tuple[Callable[[Path], str], str]] = {
    "missing image": (_delete_image, "missing_image"),
    "missing label": (_delete_label, "missing_label"),
    "colour label": (_colour_label, "rgb_label"),
    "out-of-range value": (_out_of_range, "out_of_range"),
    "size mismatch": (_size_mismatch, "size_mismatch"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_each_corruption_is_detected_and_named(corruption: str,
                                               dataset: tuple[Path, Path]) -> None:
    corrupt, kind = CORRUPTIONS[corruption]
    expected = corrupt(dataset[0])
    report = check(*dataset)
    assert not report["ok"]
    assert [f["kind"] for f in report["findings"]] == [kind]
    finding = report["findings"][0]
    assert finding["count"] == 1 and expected in finding["examples"][0]
    assert expected in format_report(report) and "FAIL" in format_report(report)


def test_count_mismatch_is_marked(dataset: tuple[Path, Path]) -> None:
    root, ref_file = dataset
    reference = json.loads(ref_file.read_text())
    reference["val_fold2"]["per_class"]["13"] += 3
    ref_file.write_text(json.dumps(reference))
    report = check(root, ref_file)
    assert not report["ok"] and not report["findings"] and report["mismatches"] == 1
    wrong = [c for c in report["comparisons"] if not c["match"]]
    assert [(c["list"], c["row"], c["reference"] - c["ours"]) for c in wrong] == [
        ("val_fold2", "class 13", 3)]
    marked = [line for line in format_report(report).splitlines()
              if "MISMATCH" in line and not line.startswith("  - ")]
    assert len(marked) == 1 and "val_fold2" in marked[0] and "class 13" in marked[0]
    assert "MISMATCH -3" in marked[0]
    assert any("training lists match; the evaluation lists differ" in n
               for n in report["diagnosis"])


def test_full_augmented_list_is_diagnosed(dataset: tuple[Path, Path]) -> None:
    root, ref_file = dataset
    reference = json.loads(ref_file.read_text())
    for fold in range(4):  # the authors' lists hold 1/1.8 of the images
        reference[f"train_fold{fold}"]["images"] = round(
            reference[f"train_fold{fold}"]["images"] / 1.8)
    ref_file.write_text(json.dumps(reference))
    report = check(root, ref_file)
    assert not report["ok"]
    assert any("the full augmented set is in use" in n for n in report["diagnosis"])


def test_all_zero_counts_are_diagnosed(dataset: tuple[Path, Path]) -> None:
    root, ref_file = dataset
    for label in (root / VOC / "SegmentationClassAug").glob("*.png"):
        assert cv2.imwrite(str(label), np.zeros((8, 8), np.uint8)[:1, :1].repeat(8, 0))
    report = check(root, ref_file)
    assert all(c.get("images") == 0 for c in report["lists"].values())
    assert any("every count is zero" in n for n in report["diagnosis"])


def test_missing_folder_and_bad_settings(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    root, ref_file = dataset
    shutil.rmtree(root / VOC / "SegmentationClassAug")
    report = check(root, ref_file, folds=(0,))
    kinds = {f["kind"]: f for f in report["findings"]}
    assert "SegmentationClassAug" in kinds["missing_folder"]["examples"][0]
    assert all("error" in c for c in report["lists"].values()) and not report["ok"]
    with pytest.raises(SettingsError, match="dataset root not found"):
        check(tmp_path / "nowhere", ref_file)
    with pytest.raises(SettingsError, match="reference counts not found"):
        check(root, tmp_path / "none.json")
    with pytest.raises(SettingsError, match="list file not found"):
        check(root, ref_file, train_list=str(tmp_path / "none.txt"))


def test_coco_layout(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    meta = make_toy_coco(root, num_images=160, workers=1)
    (root / META_FILE).unlink()
    ref_file = tmp_path / "reference.json"
    ref_file.write_text(json.dumps(
        reference_from_meta(meta, {"train": "train2014", "val": "val2014"}, "coco")))
    settings = {"dataset": "coco", "folds": (1,), "train_list": None}
    assert check(root, ref_file, **settings)["ok"]
    shutil.rmtree(root / "annotations" / "val2014")
    report = check(root, ref_file, **settings)
    assert report["findings"][0]["examples"][0] == "annotations/val2014"
    assert "error" in report["lists"]["val_fold1"] and not report["ok"]
