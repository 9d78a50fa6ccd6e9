"""COCO JSON -> class-index PNG labels, on a tiny annotation file written here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fssam.tools.coco_convert import category_index, convert_coco

from ..conftest import script_module

REPO = Path(__file__).resolve().parents[2]


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _val_json() -> dict:
    block = np.zeros((5, 5), bool)
    block[1:3, 1:4] = True
    return {
        "images": [
            {"id": 10, "file_name": "COCO_val2014_000000000010.jpg", "height": 6, "width": 8},
            {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": 5, "width": 5},
        ],
        # Listed out of order and non-contiguous: id 3 -> class 1, id 90 -> class 2.
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}],
        "annotations": [
            # Polygon, pixel corners x 2..6, y 1..4 -> rows 1..3, columns 2..5.
            {"id": 1, "image_id": 10, "category_id": 90, "iscrowd": 0,
             "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]},
            # Later polygon over the first: rows 2..4, columns 4..7.
            {"id": 2, "image_id": 10, "category_id": 3, "iscrowd": 0,
             "segmentation": [[4, 2, 8, 2, 8, 5, 4, 5]]},
            # Crowd, uncompressed column-major RLE: rows 3..5 of columns 0..3. Last in the
            # file, yet it loses to the polygon of annotation 1 on row 3, columns 2..3.
            {"id": 3, "image_id": 10, "category_id": 3, "iscrowd": 1,
             "segmentation": {"size": [6, 8], "counts": [3, 3, 3, 3, 3, 3, 3, 3, 24]}},
            # Compressed RLE (string counts) on the second image: rows 1..2, columns 1..3.
            {"id": 4, "image_id": 7, "category_id": 90, "iscrowd": 0,
             "segmentation": _compressed_rle(block)},
        ],
    }


def _train_json() -> dict:
    # Image 2 has no annotation: the authors' lists leave such images out, and so do we.
    return {"images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 3,
                        "width": 4},
                       {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 3,
                        "width": 4}],
            "categories": [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}],
            "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "iscrowd": 1,
                             "segmentation": [[0, 0, 4, 0, 4, 1, 0, 1]]}]}


@pytest.fixture
def coco_json_root(tmp_path: Path) -> Path:
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "instances_val2014.json").write_text(json.dumps(_val_json()))
    (ann / "instances_train2014.json").write_text(json.dumps(_train_json()))
    return tmp_path


def _label(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert label is not None and label.dtype == np.uint8 and label.ndim == 2
    return label


def test_labels_have_the_exact_values(coco_json_root: Path) -> None:
    assert convert_coco(coco_json_root, progress=False) == {"train2014": 1, "val2014": 2}
    out = coco_json_root / "annotations"
    expected_10 = np.array([
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 2, 2, 2, 2, 0, 0],
        [0, 0, 2, 2, 1, 1, 1, 1],
        [255, 255, 2, 2, 1, 1, 1, 1],
        [255, 255, 255, 255, 1, 1, 1, 1],
        [255, 255, 255, 255, 0, 0, 0, 0],
    ], np.uint8)
    val = out / "val2014"
    np.testing.assert_array_equal(_label(val / "COCO_val2014_000000000010.png"), expected_10)
    expected_7 = np.zeros((5, 5), np.uint8)
    expected_7[1:3, 1:4] = 2
    np.testing.assert_array_equal(_label(val / "COCO_val2014_000000000007.png"), expected_7)
    crowd_only = np.zeros((3, 4), np.uint8)
    crowd_only[0] = 255  # a crowd-only image is annotated: it gets a label (all 255 or 0)
    np.testing.assert_array_equal(_label(out / "train2014" / "COCO_train2014_000000000001.png"),
                                  crowd_only)
    assert not (out / "train2014" / "COCO_train2014_000000000002.png").exists()


def test_category_order_is_by_id() -> None:
    cats = [{"id": i} for i in (90, 1, 44, 3)]
    assert category_index(cats) == {1: 1, 3: 2, 44: 3, 90: 4}
    with pytest.raises(ValueError, match="duplicate"):
        category_index([{"id": 1}, {"id": 1}])


def test_missing_json_is_named_and_nothing_is_written(coco_json_root: Path) -> None:
    (coco_json_root / "annotations" / "instances_train2014.json").unlink()
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        convert_coco(coco_json_root, progress=False)
    assert not (coco_json_root / "annotations" / "val2014").exists()


def test_unknown_category_is_named(coco_json_root: Path) -> None:
    data = _val_json()
    data["annotations"][1]["category_id"] = 5
    (coco_json_root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="annotation 2 has unknown category id 5"):
        convert_coco(coco_json_root, subsets=["val2014"], progress=False)


def test_script_main(coco_json_root: Path) -> None:
    module = script_module(REPO / "scripts" / "prepare_coco.py")
    module.main(["--root", str(coco_json_root), "--subsets", "val2014", "--no-progress"])
    assert sorted(p.name for p in (coco_json_root / "annotations" / "val2014").iterdir()) == [
        "COCO_val2014_000000000007.png", "COCO_val2014_000000000010.png"]
    assert not (coco_json_root / "annotations" / "train2014").exists()
