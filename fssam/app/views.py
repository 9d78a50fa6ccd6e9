"""What the page shows of a support: its image with the prompt and mask drawn on it, and
a line of text (clicks as predict.py's --support-points takes them, box, mask size)."""

from __future__ import annotations

import cv2
import numpy as np

from fssam.app.logic import MASK_TINT, SupportState

OBJECT_COLOUR, BACKGROUND_COLOUR = (40, 220, 60), (235, 40, 40)
BOX_COLOUR, SCRIBBLE_COLOUR = (255, 210, 0), (255, 140, 0)


def preview(state: SupportState | None) -> np.ndarray | None:
    """RGB uint8: the mask tinted blue and outlined, scribble, box and clicks on top."""
    if state is None:
        return None
    out = state.image.astype(np.float32)
    if state.mask is not None:
        out[state.mask] = 0.5 * out[state.mask] + 0.5 * MASK_TINT
    out = out.round().astype(np.uint8)
    side = min(out.shape[:2])
    thick, radius = max(1, side // 150), max(4, side // 35)
    if state.mask is not None:
        contours, _ = cv2.findContours(state.mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), thick)
    if state.drawing is not None and not state.drawing_is_mask:
        out[state.drawing] = SCRIBBLE_COLOUR
    box = state.box
    if box is not None:
        cv2.rectangle(out, (int(box[0]), int(box[1])), (int(box[2]) - 1, int(box[3]) - 1),
                      BOX_COLOUR, thick)
    elif state.corners:
        x, y = (int(v) for v in state.corners[0])
        cv2.drawMarker(out, (x, y), BOX_COLOUR, cv2.MARKER_CROSS, 2 * radius, thick)
    for x, y, label in state.clicks:
        colour = OBJECT_COLOUR if label == 1 else BACKGROUND_COLOUR
        cv2.circle(out, (int(x), int(y)), radius, (255, 255, 255), -1)
        cv2.circle(out, (int(x), int(y)), max(1, radius - thick), colour, -1)
    return out


def clicks_text(state: SupportState) -> str:
    """The clicks as predict.py's ``--support-points`` argument (x,y,+;x,y,-)."""
    return ";".join(f"{x:g},{y:g},{'+' if label == 1 else '-'}" for x, y, label in state.clicks)


def describe(state: SupportState | None) -> str:
    """One line (Markdown) on the support's prompt and mask, then its notes."""
    if state is None:
        return "no image yet"
    height, width = state.image.shape[:2]
    parts = [f"**{state.name}** {width}x{height}"]
    if state.clicks:
        parts.append(f"clicks `{clicks_text(state)}`")
    if state.box is not None:
        parts.append("box `{:g},{:g},{:g},{:g}`".format(*state.box))
    elif state.corners:
        parts.append("box: click the opposite corner")
    if state.drawing is not None:
        parts.append("painted mask" if state.drawing_is_mask else "scribble")
    parts.append("no mask yet" if state.mask is None
                 else f"mask {100 * state.mask.mean():.1f}% of the image")
    return " · ".join(parts) + "".join(f"\n\nnote: {n}" for n in state.notes)
