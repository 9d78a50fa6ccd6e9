"""Synthetic FSS-1000 in its real layout: one folder per class, ``<n>.jpg`` and its mask
``<n>.png`` (RGB, 0 background, 255 object, with a one-pixel rim of grey 127 outside the
object and 128 inside it, so reading the mask exercises the threshold at 128).

``make_toy_fss(root, splits=("test",), images_per_class=10, seed=0)`` writes the classes of
HSNet's ``splits`` (their real names, so the benchmark's class lists find them); class ``i``
of a split looks like ``(shape i mod 10, colour i // 10 mod 8, texture i // 80 mod 5)``, one
object per image on a noisy background. It also writes ``root/toy_meta.json``. Output is a
pure function of the arguments.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fssam.data.benchmarks import fss1000
from fssam.tools.toy import META_FILE
from fssam.tools.toy_draw import (
    COLOURS,
    SHAPES,
    TEXTURES,
    background,
    shape_mask,
    texture_pattern,
)

log = logging.getLogger(__name__)


def look(index: int) -> tuple[str, str, str]:
    """(shape, colour, texture) of the split's class ``index``."""
    colours = list(COLOURS)
    return (SHAPES[index % 10], colours[index // 10 % 8], TEXTURES[index // 80 % 5])


def draw(rng: np.random.Generator, index: int, size: tuple[int, int]
         ) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image of class ``index``'s object and its mask (uint8 0/127/128/255)."""
    h, w = size
    shape, colour, texture = look(index)
    centre = (rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h)
    radius = rng.uniform(0.22, 0.34) * min(h, w)
    angle = rng.uniform(-20, 20)
    obj = shape_mask(shape, size, centre, radius, angle, rng.uniform(0.85, 1.15))
    image = background(rng, size)
    pattern = texture_pattern(texture, size, centre, angle, rng.uniform(5, 8))
    tint = np.clip(np.array(COLOURS[colour]) + rng.uniform(-15, 15, 3), 0, 255)
    image[obj] = np.where(pattern[obj], 0.45, 1.0)[:, None] * tint
    kernel = np.ones((3, 3), np.uint8)
    inner = obj & ~cv2.erode(obj.astype(np.uint8), kernel).astype(bool)
    outer = cv2.dilate(obj.astype(np.uint8), kernel).astype(bool) & ~obj
    mask = np.where(obj, 255, 0).astype(np.uint8)
    mask[inner], mask[outer] = 128, 127
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_toy_fss(root: str | os.PathLike, splits: Sequence[str] = ("test",),
                 images_per_class: int = 10, seed: int = 0, size: tuple[int, int] = (64, 64),
                 classes: int | None = None) -> dict[str, Any]:
    """Write the classes of ``splits`` ("train", "val", "test") under ``root``; ``classes``:
    only the first N (sorted) classes of each split (their lists then need a list file)."""
    root = Path(root)
    meta_path = root / META_FILE
    if root.is_dir() and any(root.iterdir()) and not meta_path.is_file():
        raise FileExistsError(f"{root} already holds files and is not a toy dataset "
                              f"({META_FILE} missing); choose another root")
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for split_index, split in enumerate(splits):
        names = fss1000.class_names(split)[:classes]
        for index, name in enumerate(names):
            folder = root / name
            folder.mkdir(exist_ok=True)
            for n in range(1, images_per_class + 1):
                rng = np.random.default_rng([seed, split_index, index, n])
                image, mask = draw(rng, index, size)
                cv2.imwrite(str(folder / f"{n}.jpg"), image[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
                cv2.imwrite(str(folder / f"{n}.png"), np.repeat(mask[..., None], 3, axis=2))
        written[split] = len(names) * images_per_class
    meta = {"layout": "fss1000", "seed": seed, "images_per_class": images_per_class,
            "size": list(size), "images": written}
    meta_path.write_text(json.dumps(meta, indent=1))
    log.info("wrote %s synthetic FSS-1000 images under %s", written, root)
    return meta
