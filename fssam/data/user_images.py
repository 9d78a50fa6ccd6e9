"""Reading a user's own images, support masks and boxes for prediction.

Masks: 0 background, 255 ignore, any other value foreground (palette PNGs are read as
indices, colour PNGs as grey); a black-and-white mask (only 0 and 255) has 255 as the object. Boxes: ``x1,y1,x2,y2`` in pixel-edge coordinates,
``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height`` (``0,0,W,H`` is the whole image).
Every error names the file it is about.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fssam.contract import IGNORE_LABEL
from fssam.data.transforms import eval_transform

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class InputError(ValueError):
    """An input file or value that cannot be used; the message names it."""


@dataclass
class Support:
    """One support example: RGB image [H,W,3] uint8 and its mask [H,W] in {0,1,255}."""

    image_path: Path
    image: np.ndarray
    mask: np.ndarray


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H,W,3] of an image file."""
    if not Path(path).is_file():
        raise InputError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path} (not an image, or a format OpenCV cannot "
                         f"decode; use JPEG or PNG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: Path, image_path: Path, image_hw: tuple[int, int], *,
              white_is_foreground: bool = False) -> np.ndarray:
    """Mask [H,W] uint8 in {0,1,255} of ``image_path`` from a PNG; checks size and content."""
    try:
        with Image.open(path) as img:
            img.load()
            raw = np.asarray(img if img.mode in ("L", "P", "I", "I;16", "1") else img.convert("L"))
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"cannot read mask {path}: {err}") from err
    if raw.shape[:2] != tuple(image_hw):
        raise InputError(f"mask {path} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
                         f"{image_path} is {image_hw[1]}x{image_hw[0]}")
    raw = raw.astype(np.int64)  # a 1-bit PNG gives booleans: True becomes 1 (foreground)
    black_and_white = bool(np.isin(raw, (0, 255)).all())
    if white_is_foreground or black_and_white:
        if black_and_white and not white_is_foreground:
            log.info("mask %s holds only 0 and 255: 255 is taken as the object", path)
        mask = (raw != 0).astype(np.uint8)
    else:
        mask = np.where(raw == 0, 0, np.where(raw == IGNORE_LABEL, IGNORE_LABEL, 1)).astype(np.uint8)
    if not (mask == 1).any():
        raise InputError(f"mask {path} has no foreground pixel")
    return mask


def parse_box(text: str, image_path: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """Filled-box mask [H,W] uint8 {0,1} from ``x1,y1,x2,y2`` (pixel edges)."""
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"box {text!r} for {image_path}: expected x1,y1,x2,y2 (four numbers "
                         f"separated by commas)") from None
    height, width = image_hw
    if not (x1 < x2 and y1 < y2):
        raise InputError(f"box {text!r} for {image_path} is empty: need x1 < x2 and y1 < y2")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise InputError(f"box {text!r} lies outside {image_path} ({width}x{height}): need "
                         f"0 <= x1 < x2 <= {width} and 0 <= y1 < y2 <= {height}")
    mask = np.zeros(image_hw, np.uint8)
    mask[math.floor(y1):math.ceil(y2), math.floor(x1):math.ceil(x2)] = 1
    return mask


def check_one_per_image(images: Sequence[Path], given: Sequence, counted: str,
                        each: str) -> None:
    """InputError unless ``given`` holds one annotation per support image, naming both
    counts (``counted``: how the annotations are counted, ``each``: what one image takes)."""
    if len(given) != len(images):
        raise InputError(f"{len(images)} support image(s) ({', '.join(map(str, images))}) but "
                         f"{len(given)} {counted}; give exactly {each} per image")


def load_supports(images: Sequence[Path], *, masks: Sequence[Path] | None = None,
                  boxes: Sequence[str] | None = None,
                  white_is_foreground: bool = False) -> list[Support]:
    """Read K support images with one mask file or one box each."""
    if not images:
        raise InputError("no support image given")
    if (masks is None) == (boxes is None):
        raise InputError("give either one mask per support image or one box per support image")
    annotations = masks if masks is not None else boxes
    kind = "mask" if masks is not None else "box"
    check_one_per_image(images, annotations, f"{kind}(es)", f"one {kind}")
    supports = []
    for image_path, annotation in zip(images, annotations):
        image = read_image(Path(image_path))
        hw = image.shape[:2]
        if masks is not None:
            mask = read_mask(Path(annotation), Path(image_path), hw,
                             white_is_foreground=white_is_foreground)
        else:
            mask = parse_box(annotation, Path(image_path), hw)
        supports.append(Support(Path(image_path), image, mask))
    return supports


def list_queries(path: Path) -> list[Path]:
    """The query image itself, or the images (by suffix, sorted) directly inside a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"query not found: {path}")
    found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    return found


def to_model_input(rgb: np.ndarray, mask: np.ndarray | None, size: int,
                   name: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluation's resize (``eval_transform`` on the float image): image [3,S,S] float32
    RGB 0..255, mask [S,S] int64 in {0,1,255} (None when no mask is given)."""
    label = np.zeros(rgb.shape[:2], np.uint8) if mask is None else mask
    image, label = eval_transform(rgb.astype(np.float32), label, size)
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if mask is None:
        return image_t, None
    if not (label == 1).any():
        log.warning("the mask of %s vanishes at %dx%d; the object is too small", name, size, size)
    return image_t, torch.from_numpy(label.astype(np.int64))
