"""Paired image/label operations (cv2). Images float32 RGB [H,W,3] 0..255, labels uint8 {0,1,255}.

Training (applied independently to the query and each support): random scale, rotation
of +-10 degrees with p=0.5 (image padded with the ImageNet mean colour, label with 255),
5x5 Gaussian blur with p=0.5, horizontal flip with p=0.5, random SxS crop padded with
the mean colour / 255 that is redrawn up to 31 times while it keeps < 85% of the
label's target pixels. Evaluation: resize to SxS (image bilinear, label nearest); the
base-learner stage validates on a letterbox instead (``letterbox``).
All randomness comes from the numpy Generator passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

from fssam.contract import IGNORE_LABEL

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
ROTATE_DEGREES = 10.0
CROP_RETRIES = 31  # the releases: a first draw, then up to 31 redraws
CROP_KEEP = 0.85
LETTERBOX_MULTIPLE = 8

# OpenCV's own thread pool can leave a mutex locked across fork(), which hangs forked
# DataLoader workers; datasets use process parallelism, so cv2 runs single-threaded.
cv2.setNumThreads(0)

Pair = tuple[np.ndarray, np.ndarray]


def binarize(label: np.ndarray, class_id: int) -> np.ndarray:
    """1 where the label is `class_id`, 255 where it is ignore, 0 elsewhere (uint8)."""
    out = np.zeros(label.shape, dtype=np.uint8)
    out[label == class_id] = 1
    out[label == IGNORE_LABEL] = IGNORE_LABEL
    return out


def scale(image: np.ndarray, label: np.ndarray, factor: float) -> Pair:
    """Resize both by `factor` (image bilinear, label nearest)."""
    image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    return image, label


def rotate(image: np.ndarray, label: np.ndarray, angle: float) -> Pair:
    """Rotate about the centre by `angle` degrees; uncovered pixels: mean colour / 255."""
    h, w = label.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=MEAN_RGB)
    label = cv2.warpAffine(label, matrix, (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_LABEL)
    return image, label


def blur(image: np.ndarray) -> np.ndarray:
    """5x5 Gaussian blur, sigma derived from the kernel size."""
    return cv2.GaussianBlur(image, (5, 5), 0)


def hflip(image: np.ndarray, label: np.ndarray) -> Pair:
    return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])


def pad_to(image: np.ndarray, label: np.ndarray, size: int) -> Pair:
    """Pad (centred) to at least size x size with the mean colour / 255."""
    h, w = label.shape
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    border = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    image = cv2.copyMakeBorder(image, *border, cv2.BORDER_CONSTANT, value=MEAN_RGB)
    label = cv2.copyMakeBorder(label, *border, cv2.BORDER_CONSTANT, value=IGNORE_LABEL)
    return image, label


def random_crop(image: np.ndarray, label: np.ndarray, size: int,
                rng: np.random.Generator) -> Pair:
    """Random size x size crop, redrawn up to CROP_RETRIES times while it keeps too few
    target pixels (the last draw is kept)."""
    image, label = pad_to(image, label, size)
    h, w = label.shape
    target = int(np.count_nonzero(label == 1))
    for _ in range(CROP_RETRIES + 1):
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop_label = label[top:top + size, left:left + size]
        if np.count_nonzero(crop_label == 1) >= CROP_KEEP * target:
            break
    crop_image = image[top:top + size, left:left + size]
    return np.ascontiguousarray(crop_image), np.ascontiguousarray(crop_label)


def train_transform(image: np.ndarray, label: np.ndarray, *, size: int,
                    scale_range: tuple[float, float], rng: np.random.Generator) -> Pair:
    """The releases' augmentation (README: Training); returns a size x size pair."""
    image, label = scale(image, label, float(rng.uniform(*scale_range)))
    if rng.random() < 0.5:
        image, label = rotate(image, label, float(rng.uniform(-ROTATE_DEGREES, ROTATE_DEGREES)))
    if rng.random() < 0.5:
        image = blur(image)
    if rng.random() < 0.5:
        image, label = hflip(image, label)
    return random_crop(image, label, size, rng)


def eval_transform(image: np.ndarray, label: np.ndarray, size: int) -> Pair:
    """Resize to size x size: image bilinear, label nearest."""
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)
    return image, label


def eval_transform_name(size: int) -> str:
    """What ``eval_transform`` does to an image, as a name (part of a cached input's key)."""
    return f"resize{size}x{size}:linear"


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) an image takes inside a ``size`` letterbox (BAM's ``Resize``): the long side
    becomes ``size``, smaller images included (they are upscaled), the other scaled with it
    and truncated; then both are floored to a multiple of 8 (at least 8), so a long side of
    417 becomes 416."""
    if height >= width:
        new_h, new_w = size, int(width * (size / height))
    else:
        new_h, new_w = int(height * (size / width)), size
    m = LETTERBOX_MULTIPLE
    return max(m, new_h // m * m), max(m, new_w // m * m)


def letterbox(image: np.ndarray, label: np.ndarray, size: int) -> Pair:
    """The base learner's validation input (BAM's ``Resize``, which its base-learner
    training validates with): resized to
    ``letterbox_size`` (image bilinear, label nearest) in the top-left corner of a size x size
    canvas; the image is padded with 0 (black, before normalisation), the label with 255."""
    new_h, new_w = letterbox_size(*label.shape, size)
    if (new_h, new_w) != label.shape:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[:new_h, :new_w] = image
    padded = np.full((size, size), IGNORE_LABEL, dtype=np.uint8)
    padded[:new_h, :new_w] = label
    return canvas, padded
