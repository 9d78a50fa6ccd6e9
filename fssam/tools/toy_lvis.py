"""Synthetic LVIS-92i in the real source format, prepared like the real one.

``make_toy_lvis(root, seed=0)`` writes COCO-2017-style images and the LVIS v1 jsons::

    root/coco/{train2017,val2017}/<12-digit id>.jpg
    root/lvis_v1_train.json, root/lvis_v1_val.json   images (id, height, width, coco_url),
                                                     categories, annotations

then runs ``fssam.tools.prepare_lvis`` on them (``masks/``, ``lvis92i_{train,val}.txt``,
``lvis92i_categories.txt``) and writes ``root/toy_meta.json``.

Val: 30 categories, most with 7..12 images, three with exactly 1, 2 and 5 images, so
Matcher's filter (more than ``shot`` images) keeps 29 at one shot and 27 at five (two per
fold either way). Train: 22 of the val categories and 8 of its own, 6..10 images each. As in
LVIS v1, some val images come from train2017. About a third of the images hold two
categories, a quarter of the objects have a second instance of their category (the mask is
their union), and segmentations cycle through polygons, compressed and uncompressed RLE.
A category has one look (shape, colour, texture of ``fssam.tools.toy_draw``) everywhere.
Output is a pure function of the arguments.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from fssam.data.benchmarks.base import TRAIN, VAL
from fssam.data.benchmarks.lvis import CATEGORY_FILE, IMAGE_DIR, LIST_FILES, MASK_DIR
from fssam.tools.prepare_lvis import prepare
from fssam.tools.toy import META_FILE
from fssam.tools.toy_draw import (COLOURS, ToyClass, background, class_table, shape_mask,
                                  texture_pattern)

log = logging.getLogger(__name__)

JSONS = {TRAIN: "lvis_v1_train.json", VAL: "lvis_v1_val.json"}
VAL_CATEGORIES, SHARED, TRAIN_ONLY = 30, 22, 8
FEW_IMAGES = (1, 2, 5)  # val categories at the edges of the filter at shot 1 and 5
TWO_CATEGORIES_P, SECOND_INSTANCE_P, VAL_FROM_TRAIN2017_P = 0.35, 0.25, 0.3
FIRST_ID = {TRAIN: 100_001, VAL: 300_001}  # ids of val images from train2017: + 200_000


def _categories(rng: np.random.Generator) -> tuple[list[int], dict[str, dict[int, int]]]:
    """All category ids (ascending) and, per split, category -> number of images."""
    ids = sorted(int(i) + 1 for i in rng.choice(1203, VAL_CATEGORIES + TRAIN_ONLY,
                                                 replace=False))
    order = [ids[i] for i in rng.permutation(len(ids))]
    val, train_only = order[:VAL_CATEGORIES], order[VAL_CATEGORIES:]
    val_counts = {c: int(rng.integers(7, 13)) for c in val}
    for c, n in zip(val[:len(FEW_IMAGES)], FEW_IMAGES):
        val_counts[c] = n
    shared = [val[i] for i in rng.permutation(VAL_CATEGORIES)[:SHARED]]
    train_counts = {c: int(rng.integers(6, 11)) for c in sorted(shared + train_only)}
    return ids, {TRAIN: train_counts, VAL: dict(sorted(val_counts.items()))}


def _deal(rng: np.random.Generator, counts: dict[int, int]) -> list[list[int]]:
    """Categories of each image: every category in exactly ``counts[c]`` images."""
    deck = [c for c, n in counts.items() for _ in range(n)]
    deck = [deck[i] for i in rng.permutation(len(deck))]
    images = []
    while deck:
        image = [deck.pop(0)]
        if rng.random() < TWO_CATEGORIES_P:
            other = next((k for k, c in enumerate(deck) if c != image[0]), None)
            if other is not None:
                image.append(deck.pop(other))
        images.append(image)
    return images


def _scene(rng: np.random.Generator, size: tuple[int, int], looks: list[ToyClass]
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """RGB uint8 image of one object per look (later on top) and each one's visible mask."""
    h, w = size
    image, taken, masks = background(rng, size), np.zeros(size, bool), []
    for look in looks:
        radius = rng.uniform(0.16, 0.26) * min(h, w)
        for attempt in range(40):  # a free place, the object shrinking every 10 tries
            radius *= 0.8 if attempt and attempt % 10 == 0 else 1.0
            centre = (rng.uniform(radius, w - radius), rng.uniform(radius, h - radius))
            angle = rng.uniform(-20, 20)
            obj = shape_mask(look.shape, size, centre, radius, angle, rng.uniform(0.85, 1.15))
            if obj.sum() >= 40 and not (obj & taken).any():
                break
        pattern = texture_pattern(look.texture, size, centre, angle, rng.uniform(5, 8))
        tint = np.clip(np.array(COLOURS[look.colour]) + rng.uniform(-15, 15, 3), 0, 255)
        image[obj] = np.where(pattern[obj], 0.45, 1.0)[:, None] * tint
        masks = [m & ~obj for m in masks] + [obj]
        taken |= obj
    return np.clip(image, 0, 255).astype(np.uint8), masks


def _segmentation(mask: np.ndarray, kind: int) -> Any:
    """LVIS-style segmentation of a bool mask: 0 polygons, 1 compressed RLE (string counts),
    2 uncompressed RLE (column-major run lengths, starting with a run of zeros)."""
    if kind == 0:
        contours = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                    cv2.CHAIN_APPROX_SIMPLE)[0]
        return [[float(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]
    if kind == 1:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    flat = mask.T.ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs}


def _split_json(rng: np.random.Generator, split: str, root: Path, counts: dict[int, int],
                looks: dict[int, ToyClass], size: tuple[int, int]) -> dict[str, Any]:
    """Draw and write the images of a split; returns its json's images and annotations."""
    images, annotations = [], []
    for n, cats in enumerate(_deal(rng, counts)):
        folder, image_id = f"{split}2017", FIRST_ID[split] + n
        if split == VAL and rng.random() < VAL_FROM_TRAIN2017_P:
            folder, image_id = "train2017", image_id + 200_000
        shape = (int(rng.integers(size[0], size[1] + 1)), int(rng.integers(size[0], size[1] + 1)))
        objects = [c for c in cats for _ in range(1 + int(rng.random() < SECOND_INSTANCE_P))]
        pixels, masks = _scene(rng, shape, [looks[c] for c in objects])
        path = root / IMAGE_DIR / folder / f"{image_id:012d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": image_id, "height": shape[0], "width": shape[1], "license": 1,
                       "coco_url": f"http://images.cocodataset.org/{folder}/{path.name}",
                       "neg_category_ids": [], "not_exhaustive_category_ids": []})
        for c, mask in zip(objects, masks):
            kind = len(annotations) % 3 if looks[c].shape != "ring" else 1  # no holes in polygons
            ys, xs = np.nonzero(mask)
            annotations.append({"image_id": image_id, "category_id": c,
                                "segmentation": _segmentation(mask, kind),
                                "area": float(mask.sum()),
                                "bbox": [float(xs.min()), float(ys.min()),
                                         float(xs.max() - xs.min() + 1),
                                         float(ys.max() - ys.min() + 1)]})
    annotations = [annotations[i] for i in rng.permutation(len(annotations))]  # not by image
    for i, ann in enumerate(annotations, start=1):
        ann["id"] = i
    return {"images": images, "annotations": annotations}


def _clear(root: Path) -> None:
    """Empty ``root`` of an earlier toy LVIS; refuse a folder that holds anything else."""
    if root.is_dir() and any(root.iterdir()) and not (root / META_FILE).is_file():
        raise FileExistsError(f"{root} already holds files and is not a toy dataset "
                              f"({META_FILE} missing); choose another root")
    for name in (IMAGE_DIR, MASK_DIR):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in (*JSONS.values(), *LIST_FILES.values(), CATEGORY_FILE):
        (root / name).unlink(missing_ok=True)


def make_toy_lvis(root: str | os.PathLike, seed: int = 0, *, size: tuple[int, int] = (96, 160),
                  workers: int | None = None) -> dict[str, Any]:
    """Write the synthetic LVIS-92i under ``root`` (image sides drawn in ``size``); returns
    the meta dict: per split, the number of images and category -> number of its images."""
    root = Path(root)
    _clear(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / META_FILE).write_text(json.dumps({"layout": "lvis", "complete": False}))
    ids, counts = _categories(np.random.default_rng([seed, 0]))
    looks = dict(zip(ids, class_table(len(ids))))
    images = {}
    for index, split in enumerate((TRAIN, VAL), start=1):
        data = _split_json(np.random.default_rng([seed, index]), split, root, counts[split],
                           looks, size)
        data["categories"] = [{"id": c, "name": f"toy_{c}", "frequency": "c",
                               "image_count": counts[split].get(c, 0)} for c in ids]
        (root / JSONS[split]).write_text(json.dumps(data))
        images[split] = len(data["images"])
    prepare(root, jsons={s: root / JSONS[s] for s in JSONS}, workers=workers, progress=False)
    meta = {"layout": "lvis", "seed": seed, "size": list(size), "images": images,
            "categories": {s: {str(c): n for c, n in counts[s].items()} for s in counts}}
    (root / META_FILE).write_text(json.dumps(meta, indent=1))
    log.info("wrote a synthetic LVIS-92i (%s images) under %s", images, root)
    return meta
