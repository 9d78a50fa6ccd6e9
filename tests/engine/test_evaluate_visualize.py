"""Overlay panels: layout, tints where the masks say, PNG written and readable."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fssam.engine.visualize import (
    IGNORE_COLOUR,
    MIN_PANEL,
    PRED_COLOUR,
    episode_panel,
    overlay,
    save_episode_png,
)


def test_overlay_tints_foreground_and_ignore_only() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0], mask[1, 1] = 1, 255
    out = overlay(image, mask, PRED_COLOUR)
    assert tuple(out[0, 0]) == tuple(round(0.5 * c) for c in PRED_COLOUR)
    assert tuple(out[1, 1]) == tuple(round(0.5 * c) for c in IGNORE_COLOUR)
    assert not out[2:].any()


def test_panel_layout_and_png(tmp_path) -> None:
    size, shots = 32, 2
    prediction = torch.zeros(50, 40, dtype=torch.bool)
    prediction[:25] = True
    panel = episode_panel(
        query_img=torch.full((3, size, size), 255.0),
        support_imgs=torch.zeros(shots, 3, size, size),
        support_masks=torch.ones(shots, size, size, dtype=torch.long),
        prediction=prediction,
        target=torch.zeros(50, 40, dtype=torch.long),
    )
    scale = -(-MIN_PANEL // size)
    width = size * scale
    assert panel.dtype == np.uint8
    assert panel.shape[1] == (shots + 2) * width + (shots + 1) * 4
    pred_panel = panel[:, (shots) * (width + 4) : (shots) * (width + 4) + width]
    image = pred_panel[-width:]  # below the title strip
    assert tuple(image[10, width // 2]) == tuple(round(127.5 + 0.5 * c) for c in PRED_COLOUR)
    assert tuple(image[0, width // 2]) == PRED_COLOUR  # the outline
    assert tuple(image[-1, 0]) == (255, 255, 255)
    path = save_episode_png(tmp_path / "vis" / "e.png", panel)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, panel)
