"""Prompted supports of evaluation episodes: clicks or a scribble drawn from the support's
ground truth, for ``dataset.support_annotation=points`` or ``scribble``.

The model turns them into support masks with its own SAM 2
(``fssam.models.fssam.prompts``); the ground-truth mask never reaches it.

- ``points``: ``dataset.support_points`` positive clicks (default 20, SANSA's evaluation
  setting: min(20, mask area) clicks drawn uniformly without replacement among the mask's
  pixels, no negative click), fewer when the mask has fewer pixels; the rest of the
  (K, N) array is padding (label -1).
- ``scribble``: ``SCRIBBLE_STROKES`` random-walk strokes (SANSA's evaluation draws 9 of
  its "rand_curve" kind), each starting on a mask pixel drawn uniformly: 10 to 29
  vertices, a direction turning by up to 0.5 rad per step, a speed changing by up to 15 px
  per step within 0..20 px, a brush 3 to 9 px wide (lengths for a 512-pixel image, scaled
  by the image's longer side / 512), then clipped to the mask.

Both are drawn on the support label after the evaluation resize (the model input, S x S;
ignore pixels, 255, are not object), in (x, y) pixels of that frame. Random numbers: one
generator per episode, ``np.random.default_rng([PROMPT_STREAM, protocol, seed, index])``,
the supports drawing in the order the model receives them: a pure function of the episode
sequence (protocol and seed) and the episode's index, whatever the loader's workers or the
processes. An empty mask (an object lost in the resize) gives no click, or an empty
scribble, and so an empty support mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from fssam.data.protocol import PROTOCOLS

PROMPTED = ("points", "scribble")
# batch keys of prompted supports and click labels (SAM 2's: 1 positive, 0 negative, -1 pad)
POINTS_KEY, LABELS_KEY, SCRIBBLES_KEY = "support_points", "support_point_labels", "support_scribbles"
POSITIVE, NEGATIVE, PADDING = 1, 0, -1
DEFAULT_POINTS = 20
SCRIBBLE_POINTS = 20  # clicks a user's scribble becomes (scribble_points)
SCRIBBLE_STROKES = 9
PROMPT_STREAM = 19  # keeps these draws apart from any other generator seeded by (seed, index)
REFERENCE_SIDE = 512  # the image side the stroke lengths are given for
VERTICES = (10, 30)  # [low, high)
MAX_TURN, MAX_SPEED, MAX_ACCEL = 0.5, 20.0, 15.0
BRUSH = (3, 10)  # [low, high)


def _no_points() -> np.ndarray:
    return np.zeros((0, 2), np.float32)


def _no_labels() -> np.ndarray:
    return np.zeros((0,), np.int64)


@dataclass(frozen=True)
class Prompt:
    """Clicks ``points`` (P, 2) as (x, y) with ``labels`` (P,) 1 positive / 0 negative, and
    an optional ``box`` (x1, y1, x2, y2), in the pixels of the prompted image."""

    points: np.ndarray = field(default_factory=_no_points)
    labels: np.ndarray = field(default_factory=_no_labels)
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        points = np.array(self.points, np.float32).reshape(-1, 2)
        labels = np.array(self.labels, np.int64).reshape(-1)
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} points but {len(labels)} labels")
        if not np.isin(labels, (POSITIVE, NEGATIVE)).all():
            raise ValueError(f"point labels must be {POSITIVE} or {NEGATIVE}, got {labels}")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels)
        if self.box is not None:
            box = np.array(self.box, np.float32).reshape(-1)
            if box.shape != (4,) or not (box[0] < box[2] and box[1] < box[3]):
                raise ValueError(f"a box is x1, y1, x2, y2 with x1 < x2 and y1 < y2, got {box}")
            object.__setattr__(self, "box", box)

    @property
    def empty(self) -> bool:
        return self.box is None and len(self.points) == 0

    @property
    def multimask(self) -> bool:
        """One click and no box: ambiguous, so the best of three masks is kept."""
        return self.box is None and len(self.points) == 1


def scribble_points(scribble: np.ndarray, max_points: int = SCRIBBLE_POINTS) -> np.ndarray:
    """Up to ``max_points`` (x, y) pixels of a boolean scribble (H, W), spread along it:
    the pixel nearest the centroid first, then each the farthest from those taken."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    ys, xs = np.nonzero(np.asarray(scribble, bool))
    pixels = np.stack([xs, ys], 1).astype(np.float64)
    if len(pixels) == 0:
        return _no_points()
    first = int(np.argmin(((pixels - pixels.mean(0)) ** 2).sum(1)))
    chosen = [first]
    nearest = ((pixels - pixels[first]) ** 2).sum(1)
    while len(chosen) < min(max_points, len(pixels)):
        index = int(np.argmax(nearest))
        chosen.append(index)
        nearest = np.minimum(nearest, ((pixels - pixels[index]) ** 2).sum(1))
    return pixels[chosen].astype(np.float32)


def scribble_prompt(scribble: np.ndarray, max_points: int = SCRIBBLE_POINTS) -> Prompt:
    """The positive clicks a scribble stands for (``scribble_points``)."""
    points = scribble_points(scribble, max_points)
    return Prompt(points, np.full(len(points), POSITIVE))


def episode_rng(protocol: str, seed: int, index: int) -> np.random.Generator:
    """The generator of episode ``index`` of the ``protocol``'s sequence drawn from ``seed``."""
    return np.random.default_rng([PROMPT_STREAM, PROTOCOLS.index(protocol), seed, index])


def sample_points(mask: np.ndarray, count: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` rows of (x, y) clicks (float32) and labels (int64): min(count, area)
    distinct mask pixels drawn uniformly, positive; the remaining rows pad (label -1)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    pixels = np.flatnonzero(np.asarray(mask) == 1)
    chosen = rng.choice(pixels, size=min(count, pixels.size), replace=False)
    points = np.zeros((count, 2), np.float32)
    labels = np.full(count, PADDING, np.int64)
    ys, xs = np.divmod(chosen, mask.shape[1])
    points[:chosen.size] = np.stack([xs, ys], 1)
    labels[:chosen.size] = POSITIVE
    return points, labels


def _stroke(start: tuple[float, float], rng: np.random.Generator,
            scale: float) -> np.ndarray:
    """Vertices (V, 2) int32 of one random-walk stroke from ``start`` (x, y)."""
    x, y = start
    angle = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(0, MAX_SPEED * scale)
    vertices = [(x, y)]
    for _ in range(int(rng.integers(*VERTICES)) - 1):
        angle += rng.uniform(-MAX_TURN, MAX_TURN)
        speed = float(np.clip(speed + rng.uniform(-MAX_ACCEL, MAX_ACCEL) * scale, 0,
                              MAX_SPEED * scale))
        x, y = x + speed * math.cos(angle), y + speed * math.sin(angle)
        vertices.append((x, y))
    return np.round(np.array(vertices)).astype(np.int32)


def random_scribble(mask: np.ndarray, rng: np.random.Generator, *,
                    strokes: int = SCRIBBLE_STROKES) -> np.ndarray:
    """A scribble (H, W) uint8 {0, 1} inside ``mask == 1``: random-walk strokes starting on
    distinct mask pixels, clipped to the mask (module docstring)."""
    inside = np.asarray(mask) == 1
    pixels = np.flatnonzero(inside)
    canvas = np.zeros(inside.shape, np.uint8)
    scale = max(inside.shape) / REFERENCE_SIDE
    for start in rng.choice(pixels, size=min(strokes, pixels.size), replace=False):
        y, x = divmod(int(start), inside.shape[1])
        line = _stroke((x, y), rng, scale)
        width = max(1, round(int(rng.integers(*BRUSH)) * scale))
        cv2.polylines(canvas, [line.reshape(-1, 1, 2)], False, 1, thickness=width)
        canvas[y, x] = 1
    return canvas * inside


def support_prompt(kind: str, label: np.ndarray, rng: np.random.Generator, *,
                   points: int = DEFAULT_POINTS) -> dict[str, torch.Tensor]:
    """One support's prompt tensors, drawn from its label (S, S) in {0, 1, 255}."""
    if kind == "points":
        xy, labels = sample_points(label, points, rng)
        return {POINTS_KEY: torch.from_numpy(xy), LABELS_KEY: torch.from_numpy(labels)}
    if kind == "scribble":
        return {SCRIBBLES_KEY: torch.from_numpy(random_scribble(label, rng))}
    raise ValueError(f"unknown prompted annotation {kind!r} (expected one of {PROMPTED})")


def stack_prompts(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The K supports' prompt tensors stacked along a new first axis."""
    return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
