"""Synthetic copies of the cross-domain test sets in their real layouts (PATNet's loaders):

- ``deepglobe``: ``<c>/test/origin/<tile>.jpg`` + ``<c>/test/groundtruth/<tile>.png``,
  classes 1..6; every tile of class ``c`` also holds class ``c mod 6 + 1`` in a corner,
  so it is listed in both class folders, as real tiles are;
- ``isic``: ``ISIC2018_Task1-2_Training_Input/<c>/ISIC_<7 digits>.jpg`` and the flat
  ``ISIC2018_Task1_Training_GroundTruth/ISIC_<7 digits>_segmentation.png``, classes 1..3;
- ``lung``: ``CXR_png/<name>.png`` + ``masks/<name>_mask.png``, and a few Montgomery-style
  ``MCUCXR_*`` masks named like their image.

Masks are grey 0/255 (1-channel PNGs). ``make_toy_crossdomain(root, name, per_class=8)``
writes ``per_class`` images per class and ``root/toy_meta.json``; output is a pure function
of the arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fssam.tools.toy import META_FILE
from fssam.tools.toy_fss import draw

LAYOUTS = ("deepglobe", "isic", "lung")
MONTGOMERY = 2  # lung masks named like their image


def _write(image_path: Path, mask_path: Path, image: np.ndarray, mask: np.ndarray) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    if image_path.suffix == ".jpg":
        cv2.imwrite(str(image_path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        cv2.imwrite(str(image_path), image[..., ::-1])
    cv2.imwrite(str(mask_path), np.where(mask >= 128, 255, 0).astype(np.uint8))


def _deepglobe(root: Path, rng_of, per_class: int, size: tuple[int, int]) -> int:
    count = 0
    for c in range(1, 7):
        for n in range(per_class):
            image, mask = draw(rng_of(c, n), c, size)
            other = c % 6 + 1  # a second class in the top-left corner
            corner = (slice(0, size[0] // 4), slice(0, size[1] // 4))
            image[corner] = (40 * other, 255 - 40 * other, 120)
            mask[corner] = 0
            stem = f"{100 + n}_{c}{n % 6}"
            for cls, m in ((c, mask), (other, np.pad(np.full((size[0] // 4, size[1] // 4), 255,
                                                             np.uint8),
                                                     ((0, size[0] - size[0] // 4),
                                                      (0, size[1] - size[1] // 4))))):
                folder = root / str(cls) / "test"
                _write(folder / "origin" / f"{stem}.jpg", folder / "groundtruth" / f"{stem}.png",
                       image, m)
            count += 1
    return count


def _isic(root: Path, rng_of, per_class: int, size: tuple[int, int]) -> int:
    for c in range(1, 4):
        for n in range(per_class):
            image, mask = draw(rng_of(c, n), 10 + c, size)
            stem = f"ISIC_{c * 1000 + n:07d}"
            _write(root / "ISIC2018_Task1-2_Training_Input" / str(c) / f"{stem}.jpg",
                   root / "ISIC2018_Task1_Training_GroundTruth" / f"{stem}_segmentation.png",
                   image, mask)
    return 3 * per_class


def _lung(root: Path, rng_of, per_class: int, size: tuple[int, int]) -> int:
    for n in range(per_class):
        image, mask = draw(rng_of(1, n), 20, size)
        grey = image.mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.uint8)
        if n < MONTGOMERY:
            name, mask_name = f"MCUCXR_{n:04d}_0", f"MCUCXR_{n:04d}_0"
        else:
            name, mask_name = f"CHNCXR_{n:04d}_0", f"CHNCXR_{n:04d}_0_mask"
        _write(root / "CXR_png" / f"{name}.png", root / "masks" / f"{mask_name}.png", grey, mask)
    return per_class


WRITERS = {"deepglobe": _deepglobe, "isic": _isic, "lung": _lung}


def make_toy_crossdomain(root: str | os.PathLike, name: str, per_class: int = 8,
                         seed: int = 0, size: tuple[int, int] = (48, 48)) -> dict[str, Any]:
    """Write the synthetic ``name`` test set ("deepglobe", "isic", "lung") under ``root``."""
    if name not in WRITERS:
        raise ValueError(f"unknown layout {name!r} (expected one of {', '.join(LAYOUTS)})")
    root = Path(root)
    if root.is_dir() and any(root.iterdir()) and not (root / META_FILE).is_file():
        raise FileExistsError(f"{root} already holds files and is not a toy dataset "
                              f"({META_FILE} missing); choose another root")
    root.mkdir(parents=True, exist_ok=True)
    images = WRITERS[name](root, lambda c, n: np.random.default_rng([seed, c, n]), per_class,
                           size)
    meta = {"layout": name, "seed": seed, "per_class": per_class, "images": images}
    (root / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta
