"""Checking an uploaded image before the app uses it.

Pixels are read as predict.py reads them (``fssam.data.user_images.read_image``: OpenCV,
any depth reduced to 8 bits, grey copied to R, G and B, CMYK converted, transparency
dropped), so the app and predict.py see the same image. What that changes is said in a
note; what cannot be used (not an image, too many pixels) is an ``UploadError`` whose
message names the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from fssam.data.user_images import InputError, read_image

MAX_MEGAPIXELS = 40.0
NOTES = {
    "1": "1-bit black and white: used as grey copied to R, G and B",
    "L": "greyscale: its grey is used for R, G and B",
    "LA": "greyscale with transparency: its grey is used for R, G and B, transparency dropped",
    "I;16": "16 bits per pixel: reduced to 8 bits (the top 8, as predict.py reads it)",
    "I;16B": "16 bits per pixel: reduced to 8 bits (the top 8, as predict.py reads it)",
    "I": "32-bit integer pixels: reduced to 8 bits as predict.py reads it",
    "F": "floating-point pixels: reduced to 8 bits as predict.py reads it",
    "CMYK": "CMYK: converted to RGB as predict.py reads it (colours may look different "
            "from other viewers)",
    "RGBA": "transparency dropped",
    "P": "a palette image: its colours are used",
}


class UploadError(ValueError):
    """An upload the app cannot use; the message says why and names the file."""


def read_upload(path: str | Path | None, *, max_megapixels: float = MAX_MEGAPIXELS
                ) -> tuple[np.ndarray, list[str]]:
    """RGB uint8 (H, W, 3) of an uploaded image file and notes on its conversion."""
    if path is None:
        raise UploadError("no file was uploaded")
    path = Path(path)
    try:
        with Image.open(path) as img:
            mode, (width, height) = img.mode, img.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        if isinstance(err, Image.DecompressionBombError):
            raise UploadError(f"{path.name} has too many pixels: {err}") from err
        raise UploadError(f"{path.name} is not an image this app can read (use JPEG or PNG)"
                          ) from err
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise UploadError(f"{path.name} is {width}x{height} ({megapixels:.0f} megapixels): the "
                          f"app takes at most {max_megapixels:g}; scale it down first")
    try:
        rgb = read_image(path)
    except InputError as err:
        raise UploadError(f"{path.name} cannot be decoded (use JPEG or PNG)") from err
    notes = [f"{path.name}: {NOTES[mode]}"] if mode in NOTES else []
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if not notes and raw is not None and raw.dtype != np.uint8:
        notes.append(f"{path.name}: {raw.dtype.itemsize * 8} bits per channel: reduced to 8 "
                     f"bits (the top 8, as predict.py reads it)")
    return rgb, notes
