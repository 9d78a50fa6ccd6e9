"""Drawing of the synthetic few-shot images: class appearance, shapes, textures, scenes.

A class is a (shape, colour, texture) triple; no two classes share all three. Objects are
drawn with a random size, position, small rotation and aspect jitter over a noisy,
low-saturation background; later objects occlude earlier ones. Every kept object shows at
least ``min_pixels`` labelled pixels, so it is eligible under the 2·32·32 rule. Pixels on
instance borders (object/background and object/object) become 255, like VOC's bands.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from fssam.contract import IGNORE_LABEL

SHAPES = (
    "disc", "square", "triangle", "ring", "cross",
    "star", "ellipse", "diamond", "hexagon", "crescent",
)
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (35, 70, 230),
    "yellow": (235, 215, 25),
    "magenta": (215, 35, 200),
    "cyan": (30, 210, 220),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
}
TEXTURES = ("plain", "stripes", "checks", "dots", "grid")


@dataclass(frozen=True)
class ToyClass:
    """Appearance of one class."""

    shape: str
    colour: str
    texture: str


def class_table(num_classes: int) -> list[ToyClass]:
    """Appearance of classes 1..num_classes (list index 0 is class 1); at most 80.

    Class index ``c`` (0-based) gets shape ``c % 10``; with 20 classes the colour is
    ``c % 8``, with more it is ``c // 10``, so (shape, colour) pairs never repeat;
    the texture is ``(c + c // 10) % 5``.
    """
    if not 1 <= num_classes <= len(SHAPES) * len(COLOURS):
        raise ValueError(f"num_classes must be in 1..80, got {num_classes}")
    colours = list(COLOURS)
    table = []
    for c in range(num_classes):
        colour = colours[c % 8] if num_classes <= 40 else colours[c // 10]
        table.append(ToyClass(SHAPES[c % 10], colour, TEXTURES[(c + c // 10) % 5]))
    return table


def _regular(n: int, inner: float | None = None, phase: float = -np.pi / 2) -> np.ndarray:
    """Unit polygon with ``n`` vertices (or a star alternating radius 1 and ``inner``)."""
    if inner is None:
        angles = phase + 2 * np.pi * np.arange(n) / n
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    angles = phase + np.pi * np.arange(2 * n) / n
    radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


_CROSS = np.array(
    [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3),
     (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)]
)
_POLYGONS = {
    "square": _regular(4, phase=np.pi / 4),
    "triangle": _regular(3),
    "star": _regular(5, inner=0.48),
    "diamond": _regular(4) * np.array([0.62, 1.0]),
    "hexagon": _regular(6, phase=0.0),
    "cross": _CROSS,
}


def shape_mask(shape: str, size: tuple[int, int], centre: tuple[float, float], radius: float,
               angle: float, aspect: float) -> np.ndarray:
    """Bool mask [H,W] of ``shape`` (outer radius ``radius``, rotation ``angle`` degrees)."""
    mask = np.zeros(size, np.uint8)
    cx, cy = centre
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    if shape in _POLYGONS:
        pts = _POLYGONS[shape] * radius * np.array([aspect, 1.0])
        pts = pts @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif shape in ("disc", "ring", "crescent"):
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, -1)
        if shape == "ring":
            cv2.circle(mask, (round(cx), round(cy)), round(0.55 * radius), 0, -1)
        elif shape == "crescent":
            off = (round(cx + 0.5 * radius * s), round(cy - 0.5 * radius * c))
            cv2.circle(mask, off, round(0.8 * radius), 0, -1)
    elif shape == "ellipse":
        axes = (round(radius), round(0.55 * radius * aspect))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, angle, 0, 360, 1, -1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mask.astype(bool)


@functools.lru_cache(maxsize=None)
def area_factor(shape: str) -> float:
    """Area of ``shape`` divided by radius², measured at radius 100."""
    return float(shape_mask(shape, (240, 240), (120, 120), 100, 0.0, 1.0).sum()) / 1e4


def texture_pattern(texture: str, size: tuple[int, int], centre: tuple[float, float],
                    angle: float, period: float) -> np.ndarray:
    """Bool [H,W] pattern in the object's own frame (True = darkened)."""
    ys, xs = np.ogrid[0:size[0], 0:size[1]]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    u = (xs - centre[0]) * c + (ys - centre[1]) * s
    v = -(xs - centre[0]) * s + (ys - centre[1]) * c
    if texture == "plain":
        return np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
    if texture == "stripes":
        return np.floor((u + v) / period) % 2 == 1
    if texture == "checks":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 1
    if texture == "dots":
        du, dv = (u % (1.5 * period)) - 0.75 * period, (v % (1.5 * period)) - 0.75 * period
        return du**2 + dv**2 < (0.38 * period) ** 2
    if texture == "grid":
        return ((u % (1.5 * period)) < 2.5) | ((v % (1.5 * period)) < 2.5)
    raise ValueError(f"unknown texture {texture!r}")


def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Float32 [H,W,3] low-saturation blotchy background with fine noise."""
    h, w = size
    base = rng.uniform(60, 170)
    coarse = base + rng.uniform(-35, 35, (max(2, h // 24), max(2, w // 24), 1))
    coarse = coarse + rng.uniform(-14, 14, coarse.shape[:2] + (3,))
    img = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-28, 29, (h, w), dtype=np.int8).astype(np.float32)  # std ~16
    fine = cv2.GaussianBlur(grain, (0, 0), 1.2)
    return img + fine[..., None]


def border_band(instances: np.ndarray) -> np.ndarray:
    """Bool [H,W]: pixels within about 2 px of a change of instance id."""
    edge = np.zeros(instances.shape, np.uint8)
    dx = instances[:, 1:] != instances[:, :-1]
    dy = instances[1:, :] != instances[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return cv2.dilate(edge, np.ones((3, 3), np.uint8)) > 0


def _place(rng: np.random.Generator, shape: str, size: tuple[int, int], min_pixels: int) -> dict:
    h, w = size
    r_min = np.sqrt(1.7 * min_pixels / area_factor(shape))
    radius = rng.uniform(r_min, max(r_min * 1.15, 0.42 * min(h, w)))
    margin = 0.6 * radius
    return {
        "centre": (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)),
        "radius": radius,
        "angle": rng.uniform(-20, 20),
        "aspect": rng.uniform(0.85, 1.15),
    }


def _layout(rng: np.random.Generator, size: tuple[int, int], shapes: list[str],
            min_pixels: int, tries: int) -> tuple[np.ndarray, list[tuple[int, dict, np.ndarray]]]:
    """Instance map (uint8, 0 = background) and the (index, pose, mask) of kept objects."""
    instances = np.zeros(size, np.uint8)
    kept: list[tuple[int, dict, np.ndarray]] = []
    for index, shape in enumerate(shapes):
        for _ in range(tries):
            pose = _place(rng, shape, size, min_pixels)
            mask = shape_mask(shape, size, **pose)
            trial = instances.copy()
            trial[mask] = len(kept) + 1
            visible = np.where(border_band(trial), 0, trial)
            counts = np.bincount(visible.ravel(), minlength=len(kept) + 2)
            if counts[1:].min() >= min_pixels:
                instances = trial
                kept.append((index, pose, mask))
                break
    return instances, kept


def _paint(rng: np.random.Generator, img: np.ndarray, look: ToyClass, pose: dict,
           mask: np.ndarray) -> None:
    """Paint one textured object into ``img`` (float32 [H,W,3]) inside ``mask``."""
    colour = np.clip(np.array(COLOURS[look.colour]) + rng.uniform(-15, 15, 3), 0, 255)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    centre = (pose["centre"][0] - cols[0], pose["centre"][1] - rows[0])
    box_size = (rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0])
    pattern = texture_pattern(look.texture, box_size, centre, pose["angle"], rng.uniform(6, 9))
    shade = np.where(pattern, 0.42, 1.0) * rng.uniform(0.85, 1.08)
    inside = mask[box]
    img[box][inside] = shade[inside, None] * colour


def _small_object(rng: np.random.Generator, label: np.ndarray, shape: str,
                  max_pixels: int, tries: int) -> tuple[dict, np.ndarray] | None:
    """Pose and mask of a shape of 120..max_pixels pixels lying on background only."""
    h, w = label.shape
    free = label == 0
    for _ in range(tries):
        radius = np.sqrt(rng.uniform(120, max_pixels) / area_factor(shape))
        margin = radius + 2
        if min(h, w) <= 2 * margin:
            return None
        pose = {"centre": (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)),
                "radius": radius, "angle": rng.uniform(-20, 20), "aspect": 1.0}
        mask = shape_mask(shape, (h, w), **pose)
        if 0 < mask.sum() < max_pixels and free[cv2.dilate(mask.astype(np.uint8),
                                                           np.ones((5, 5), np.uint8)) > 0].all():
            return pose, mask
    return None


def render_scene(rng: np.random.Generator, size: tuple[int, int], classes: list[int],
                 table: list[ToyClass], min_pixels: int, tries: int = 40,
                 small: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H,W,3] image and uint8 label (0 bg, class ids, 255 band) of ``classes``.

    Objects that cannot be placed in ``tries`` attempts, keeping every object at
    ``min_pixels`` visible labelled pixels, are left out. ``small``: the class of one more
    object, of fewer than ``min_pixels`` pixels (present, not eligible), drawn on the
    background where it fits (left out where it does not).
    """
    shapes = [table[c - 1].shape for c in classes]
    instances, kept = _layout(rng, size, shapes, min_pixels, tries)
    img = background(rng, size)
    for index, pose, mask in kept:
        _paint(rng, img, table[classes[index] - 1], pose, mask)
    lut = np.array([0] + [classes[index] for index, _, _ in kept], np.uint8)
    label = lut[instances]
    label[border_band(instances)] = IGNORE_LABEL
    placed = None if small is None else _small_object(
        rng, label, table[small - 1].shape, min_pixels, tries)
    if placed is not None:
        pose, mask = placed
        _paint(rng, img, table[small - 1], pose, mask)
        label[mask] = small
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img += rng.integers(-9, 10, img.shape, dtype=np.int8)  # sensor noise, std ~5
    return np.clip(img, 0, 255).astype(np.uint8), label
