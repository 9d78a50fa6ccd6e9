"""PNG overlays of evaluation episodes: supports with their masks, prediction, ground truth.

One image per episode, panels side by side: each support image with its mask, then the
query with the prediction, then the query with the ground truth. Foreground is tinted and
outlined, ignore pixels (255) are tinted grey.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from fssam.contract import IGNORE_LABEL

SUPPORT_COLOUR = (0, 160, 255)
PRED_COLOUR = (255, 0, 0)
TRUTH_COLOUR = (0, 255, 0)
IGNORE_COLOUR = (160, 160, 160)
ALPHA = 0.5
MIN_PANEL = 160


def _to_rgb_uint8(img: torch.Tensor) -> np.ndarray:
    """[3, H, W] float RGB 0..255 -> [H, W, 3] uint8."""
    return img.detach().float().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Any-size label or boolean mask -> uint8 [H, W] at ``size`` (nearest)."""
    array = mask.detach().to("cpu", torch.uint8).numpy()
    if array.shape != size:
        array = cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return array


def overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Tint ``image`` (uint8 RGB) where ``mask == 1``, grey where ``mask == 255``."""
    out = image.astype(np.float32)
    for value, tint in ((1, colour), (IGNORE_LABEL, IGNORE_COLOUR)):
        where = mask == value
        out[where] = (1 - ALPHA) * out[where] + ALPHA * np.asarray(tint, np.float32)
    return out.round().astype(np.uint8)


def outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Draw the contours of ``mask == 1`` on ``image`` (uint8 RGB) in ``colour``."""
    contours, _ = cv2.findContours(
        (mask == 1).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
    )
    return cv2.drawContours(np.ascontiguousarray(image), contours, -1, colour, 2)


def _enlarged(image: np.ndarray) -> np.ndarray:
    """``image`` scaled by an integer factor (nearest) to at least ``MIN_PANEL`` pixels wide."""
    if image.shape[1] >= MIN_PANEL:
        return image
    scale = -(-MIN_PANEL // image.shape[1])
    size = (image.shape[1] * scale, image.shape[0] * scale)
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)


def _panel(
    image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], title: str
) -> np.ndarray:
    """Tinted, enlarged, outlined and titled panel."""
    tinted = _enlarged(overlay(image, mask, colour))
    return _titled(outline(tinted, _enlarged(mask), colour), title)


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    """Panel with a white title strip above it."""
    strip = np.full((22, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def episode_panel(
    *,
    query_img: torch.Tensor,
    support_imgs: torch.Tensor,
    support_masks: torch.Tensor,
    prediction: torch.Tensor,
    target: torch.Tensor,
) -> np.ndarray:
    """RGB uint8 image: supports (with masks), query + prediction, query + ground truth.

    ``query_img`` [3, S, S] and ``support_imgs`` [K, 3, S, S] are float RGB 0..255,
    ``support_masks`` [K, S, S] in {0, 1, 255}; ``prediction`` (bool) and ``target``
    ({0, 1, 255}) may have the original label size and are resized to S x S (nearest).
    """
    size = tuple(query_img.shape[-2:])
    query = _to_rgb_uint8(query_img)
    panels = [
        _panel(_to_rgb_uint8(img), _resize_mask(mask, size), SUPPORT_COLOUR, f"support {k}")
        for k, (img, mask) in enumerate(zip(support_imgs, support_masks))
    ]
    panels.append(_panel(query, _resize_mask(prediction, size), PRED_COLOUR, "prediction"))
    panels.append(_panel(query, _resize_mask(target, size), TRUTH_COLOUR, "ground truth"))
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


def save_episode_png(path: str | os.PathLike, panel: np.ndarray) -> Path:
    """Write an RGB panel as PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
