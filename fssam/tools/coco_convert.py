"""Class-index PNG labels from COCO's JSON instance annotations (pycocotools).

For every image of ``instances_<subset>.json`` with at least one annotation one
``<image file stem>.png`` is written (the images without any are left out, as in the
authors' lists: 82081 of train2014's 82783 images, 40137 of val2014's 40504):
pixel = class index (1..N: the categories sorted by category id, so COCO's 80 categories
become 1..80 in COCO's category order), 0 background, 255 ignore.

Overlap rule: crowd regions (``iscrowd=1``) are painted 255 first; then the non-crowd
annotations are painted in the order they appear in the JSON file, each over the ones
before it. So a labelled instance wins over a crowd region, and where instances overlap
the later annotation wins.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from fssam.contract import IGNORE_LABEL
from tqdm import tqdm

log = logging.getLogger(__name__)

SUBSETS = ("train2014", "val2014")


def category_index(categories: Iterable[dict[str, Any]]) -> dict[int, int]:
    """COCO category id -> class index 1..N (ascending category id)."""
    ids = sorted(int(c["id"]) for c in categories)
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate category ids in the annotation file")
    if len(ids) >= IGNORE_LABEL:
        raise ValueError(f"{len(ids)} categories do not fit an 8-bit label with 255 = ignore")
    return {cid: i + 1 for i, cid in enumerate(ids)}


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Bool [H,W] of a polygon list, an uncompressed RLE or a compressed RLE."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def image_label(image: dict[str, Any], annotations: Sequence[dict[str, Any]],
                index: dict[int, int]) -> np.ndarray:
    """Label uint8 [H,W] of one image from its annotations (file order), see module doc."""
    height, width = int(image["height"]), int(image["width"])
    label = np.zeros((height, width), np.uint8)
    crowd = [a for a in annotations if a.get("iscrowd", 0)]
    for ann in crowd + [a for a in annotations if not a.get("iscrowd", 0)]:
        cid = int(ann["category_id"])
        if cid not in index:
            raise ValueError(f"annotation {ann.get('id')} has unknown category id {cid}")
        mask = annotation_mask(ann["segmentation"], height, width)
        label[mask] = IGNORE_LABEL if ann.get("iscrowd", 0) else index[cid]
    return label


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"COCO annotation file not found: {path} (unpack annotations_trainval2014.zip "
            f"so that it holds instances_train2014.json and instances_val2014.json)"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def convert_subset(json_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                  progress: bool = True) -> int:
    """Write one label PNG per annotated image of ``json_path`` into ``out_dir``; returns
    the count."""
    data = _load_json(Path(json_path))
    index = category_index(data["categories"])
    by_image: dict[int, list[dict[str, Any]]] = {int(img["id"]): [] for img in data["images"]}
    for ann in data["annotations"]:
        image_id = int(ann["image_id"])
        if image_id not in by_image:
            raise ValueError(f"annotation {ann.get('id')} refers to unknown image id {image_id}")
        by_image[image_id].append(ann)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = [image for image in data["images"] if by_image[int(image["id"])]]
    skipped = len(data["images"]) - len(images)
    if skipped:
        log.info("%d images of %s have no annotation: no label written for them", skipped,
                 Path(json_path).name)
    for image in tqdm(images, desc=f"labels {out.name}", unit="image", disable=not progress):
        label = image_label(image, by_image[int(image["id"])], index)
        path = out / f"{Path(image['file_name']).stem}.png"
        if not cv2.imwrite(str(path), label):
            raise OSError(f"cannot write {path}")
    log.info("wrote %d labels (%d classes) to %s", len(images), len(index), out)
    return len(images)


def convert_coco(root: str | os.PathLike, *, subsets: Sequence[str] = SUBSETS,
                 ann_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, int]:
    """Labels of every subset: ``<ann_dir>/instances_<subset>.json`` ->
    ``root/annotations/<subset>/``.

    ``ann_dir`` defaults to ``root/annotations``. Every JSON file is checked to exist
    before anything is written.
    """
    root = Path(root)
    ann_dir = Path(ann_dir) if ann_dir is not None else root / "annotations"
    json_paths = {subset: ann_dir / f"instances_{subset}.json" for subset in subsets}
    for path in json_paths.values():
        if not path.is_file():
            _load_json(path)  # raises the error naming the file
    return {subset: convert_subset(path, root / "annotations" / subset, progress=progress)
            for subset, path in json_paths.items()}
