"""Bad data files: one definition for training, testing and ``scripts/check_data.py``.

A file is bad when it is empty (0 bytes), cannot be decoded, is a JPEG cut short (OpenCV
decodes those without an error, filling the missing rows with grey: the check looks for
the JPEG end marker), is a label whose size differs from its image's, or a label with
values that are no class of the dataset (nor 255). Met while training or testing, the
error names the file, what is wrong and the episode, and points to
``scripts/check_data.py``, which finds every such file of a dataset in one pass.
"""

from __future__ import annotations

import os

import numpy as np

from fssam.contract import IGNORE_LABEL

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
TAIL = 1024  # bytes searched for the end marker (a few writers pad after it)
CHECK_HINT = ("scripts/check_data.py --dataset <pascal|coco> --root <root> lists every "
              "such file of a dataset in one pass; run it before training")


class BadFileError(ValueError):
    """An image or label that cannot be used; the message names it (and the episode)."""


def check_not_empty(path: str, what: str) -> None:
    """BadFileError when ``path`` (an existing ``what``: image or label) has 0 bytes."""
    if os.path.getsize(path) == 0:
        raise BadFileError(f"{what} {path} is empty (0 bytes)")


def jpeg_truncated(path: str) -> bool:
    """True for a JPEG without its end marker (a download or copy cut short, zero-filled
    or not); False for every other file. The end marker is looked for in the last
    ``TAIL`` bytes, then, when data follow the image, by walking the file's segments."""
    with open(path, "rb") as handle:
        if handle.read(2) != JPEG_START:
            return False
        handle.seek(max(0, os.path.getsize(path) - TAIL))
        if JPEG_END in handle.read():
            return False
        handle.seek(0)
        return not _reaches_end_marker(handle.read())


def _reaches_end_marker(data: bytes) -> bool:
    """Walk a JPEG from its start marker: segments by their lengths (an embedded thumbnail
    and its own end marker are skipped with their segment), entropy-coded data up to the
    next marker (0xFF then 0x00 is a data byte, RSTn and fill bytes continue)."""
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return False
        marker = data[pos + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF:
            pos += 1
        elif marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
        elif pos + 4 > len(data):
            return False
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


def check_image_complete(path: str) -> None:
    """BadFileError for an empty or truncated image file."""
    check_not_empty(path, "image")
    if jpeg_truncated(path):
        raise BadFileError(f"image {path} is truncated (a JPEG without its end marker: "
                           f"the file was cut short)")


def out_of_range(label: np.ndarray, max_class: int) -> list[int]:
    """Values of ``label`` that are neither a class 0..``max_class`` nor 255."""
    values = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    return [int(v) for v in values if v > max_class and v != IGNORE_LABEL]


def check_label_values(label: np.ndarray, path: str, max_class: int | None) -> None:
    """BadFileError naming ``path`` when ``label`` has values outside 0..max_class and 255
    (no check when ``max_class`` is None)."""
    if max_class is None:
        return
    bad = out_of_range(label, max_class)
    if bad:
        raise BadFileError(f"label {path} has values {bad[:6]} outside 0..{max_class} and 255")


def in_episode(err: Exception, where: str) -> BadFileError:
    """``err`` (from reading a file) as a BadFileError that also names ``where`` (the
    episode and the image's role in it) and ``CHECK_HINT``."""
    return BadFileError(f"{err} [{where}]. {CHECK_HINT}")
