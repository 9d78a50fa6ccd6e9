"""Reading a user's support prompts for prediction: clicks, a box for SAM 2, a scribble.

Clicks: ``x,y,+;x,y,-`` (``+``/``1`` object, ``-``/``0`` background), pixel (column, row)
coordinates with ``0 <= x < width`` and ``0 <= y < height``. A box: ``x1,y1,x2,y2`` as
``user_images.parse_box`` checks it. A scribble: a PNG of the image's size whose non-zero
pixels (of its alpha channel when it has one, else of its grey values) are the stroke.
Every error names the image it is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fssam.data.support_prompts import NEGATIVE, POSITIVE, Prompt, scribble_prompt
from fssam.data.user_images import InputError, check_one_per_image, parse_box, read_image

LABELS = {"+": POSITIVE, "1": POSITIVE, "-": NEGATIVE, "0": NEGATIVE}


def parse_points(text: str, image_path: Path, image_hw: tuple[int, int]) -> Prompt:
    """Clicks ``x,y,+;x,y,-`` on an (H, W) image."""
    points, labels = [], []
    height, width = image_hw
    for part in (p.strip() for p in text.split(";")):
        fields = [f.strip() for f in part.split(",")]
        try:
            x, y = float(fields[0]), float(fields[1])
            label = LABELS[fields[2]] if len(fields) == 3 else None
        except (ValueError, IndexError, KeyError):
            label = None
        if label is None:
            raise InputError(f"clicks {text!r} for {image_path}: expected x,y,+ or x,y,- "
                             f"separated by ';' (e.g. '120,80,+;40,30,-'), got {part!r}")
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"click {part!r} lies outside {image_path} ({width}x{height}): "
                             f"need 0 <= x < {width} and 0 <= y < {height}")
        points.append((x, y))
        labels.append(label)
    return Prompt(points, labels)


def parse_box_prompt(text: str, image_path: Path, image_hw: tuple[int, int]) -> Prompt:
    """A box ``x1,y1,x2,y2`` (checked as for filled boxes) as SAM 2's box prompt."""
    parse_box(text, image_path, image_hw)
    return Prompt(box=[float(v) for v in text.split(",")])


def read_scribble(path: Path, image_path: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """Boolean stroke (H, W) of a scribble PNG drawn on ``image_path``."""
    try:
        with Image.open(path) as img:
            img.load()
            alpha = "A" in img.getbands() or "transparency" in img.info
            rgba = img.convert("RGBA") if alpha else img.convert("L")
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"cannot read scribble {path}: {err}") from err
    values = np.asarray(rgba)
    stroke = values[..., 3] > 0 if alpha else values > 0
    if stroke.shape != tuple(image_hw):
        raise InputError(f"scribble {path} is {stroke.shape[1]}x{stroke.shape[0]} (WxH) but its "
                         f"image {image_path} is {image_hw[1]}x{image_hw[0]}")
    if not stroke.any():
        raise InputError(f"scribble {path} has no stroke (no non-zero pixel)")
    return stroke


def load_prompts(images: Sequence[Path], *, points: Sequence[str] | None = None,
                 scribbles: Sequence[Path] | None = None, boxes: Sequence[str] | None = None
                 ) -> list[tuple[Path, np.ndarray, Prompt]]:
    """(image path, RGB, prompt) of K support images with one prompt each: clicks, a
    scribble (its ``scribble_prompt``) or a box (the first of the three given)."""
    given, kind = next(((v, k) for v, k in ((points, "clicks"), (scribbles, "scribble"),
                                            (boxes, "box")) if v), (None, None))
    if not images or given is None:
        raise InputError("give support images and one prompt (clicks, scribble or box) each")
    check_one_per_image(images, given, f"{kind} argument(s)", "one")
    prompts = []
    for path, value in zip(images, given):
        rgb = read_image(Path(path))
        hw = rgb.shape[:2]
        if kind == "clicks":
            prompt = parse_points(value, Path(path), hw)
        elif kind == "scribble":
            prompt = scribble_prompt(read_scribble(Path(value), Path(path), hw))
        else:
            prompt = parse_box_prompt(value, Path(path), hw)
        prompts.append((Path(path), rgb, prompt))
    return prompts
