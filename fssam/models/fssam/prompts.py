"""Support prompts (clicks, a box, a scribble) -> support masks, by SAM 2's promptable path.

The mask comes from the prompt encoder and mask decoder of the SAM2Base the model already
holds (no second copy of weights), on the image features the model computes anyway
(``sam2_adapter.ImageFeatures``: the feature cache's ``sam2`` entry), so a support image
is encoded once for its prompt and for the episode. It is what ``SAM2ImagePredictor``
returns for the same image and prompt: the top level plus ``no_mem_embed``, the box as two
corner points labelled 2 and 3 before the clicks, the decoder's low-resolution logits
upsampled (bilinear, align_corners=False) to the image's size and thresholded at 0. The
decoder is called directly, as the predictor does, so SAM 2's object-score gating (every
logit -1024 when the score is <= 0, in ``_forward_sam_heads``) never applies.

Conventions and choices:

- Coordinates are pixels of the image the prompt was drawn on, ``(x, y)`` = (column,
  row), as the predictor takes them (``normalize_coords=True``): scaled to the model input
  by ``S / W`` and ``S / H``; SAM 2's prompt encoder adds 0.5 (a pixel's centre). Boxes are
  ``x1, y1, x2, y2`` in the same frame.
- Multimask: a single click without a box is ambiguous, so the decoder's three masks are
  computed and the one with the highest predicted IoU kept (SAM 2's own rule, its
  ``_use_multimask`` for one point); every other prompt asks for one mask (with FSSAM's
  eval-mode SAM 2 the decoder itself falls back to the best of three when that mask is
  unstable, as the predictor on the same model does).
- Threshold: logits > 0 (the predictor's ``mask_threshold``).
- A scribble becomes positive clicks: at most ``SCRIBBLE_POINTS`` of its pixels, the first
  the one nearest its centroid, each next the one farthest from those already taken. SAM 2
  was trained with clicks and boxes, and with mask prompts only as its own previous
  low-resolution logits; a thin stroke given as a mask prompt is unlike anything it saw,
  and every pixel of a stroke as a click (thousands) is far from its training too. Points
  spread along the stroke keep its extent with a click count like SANSA's 20.
- An empty prompt (no point, no box; a scribble with no pixel) gives an empty mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from torch import Tensor

from fssam.data.support_prompts import (LABELS_KEY, PADDING, POINTS_KEY, SCRIBBLES_KEY,
                                        Prompt, scribble_prompt)
from fssam.models.fssam.sam2_adapter import ImageFeatures

BOX_LABELS = (2, 3)
MASK_THRESHOLD = 0.0
def _model_frame(xy: np.ndarray, image_hw: tuple[int, int], size: int,
                 device: torch.device) -> Tensor:
    """(x, y) pixels of an (H, W) image -> the model input's frame, as the predictor
    computes it (float32: x / W * S, y / H * S)."""
    coords = torch.as_tensor(xy, dtype=torch.float, device=device).clone()
    coords[..., 0] = coords[..., 0] / image_hw[1]
    coords[..., 1] = coords[..., 1] / image_hw[0]
    return coords * size


def sparse_prompt(prompt: Prompt, image_hw: tuple[int, int], size: int,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """Points (1, P', 2) in the model frame and labels (1, P'): box corners first (2, 3)."""
    coords = _model_frame(prompt.points, image_hw, size, device)[None]
    labels = torch.as_tensor(prompt.labels, dtype=torch.int, device=device)[None]
    if prompt.box is not None:
        corners = _model_frame(prompt.box.reshape(2, 2), image_hw, size, device)[None]
        coords = torch.cat([corners, coords], 1)
        labels = torch.cat([torch.tensor([BOX_LABELS], dtype=torch.int, device=device),
                            labels], 1)
    return coords, labels


@dataclass
class PromptDecode:
    """The decoder's chosen mask for one prompt."""

    lowres: Tensor  # (1, 1, S/4, S/4) logits
    iou: float  # its predicted IoU
    multimask: bool  # whether it is the best of three


@torch.no_grad()
def decode_prompt(sam2: SAM2Base, feats: ImageFeatures, prompt: Prompt,
                  image_hw: tuple[int, int]) -> PromptDecode:
    """SAM 2's prompt encoder and mask decoder for one image's features and a non-empty
    prompt drawn on an (H, W) image."""
    if prompt.empty:
        raise ValueError("an empty prompt has no decode (it gives an empty mask)")
    maps = feats.maps()
    if maps[-1].shape[0] != 1:
        raise ValueError(f"features of one image expected, got {maps[-1].shape[0]}")
    top = maps[-1]
    if sam2.directly_add_no_mem_embed:
        top = top + sam2.no_mem_embed.view(1, -1, 1, 1)
    points = sparse_prompt(prompt, image_hw, sam2.image_size, top.device)
    sparse, dense = sam2.sam_prompt_encoder(points=points, boxes=None, masks=None)
    masks, ious, _, _ = sam2.sam_mask_decoder(
        image_embeddings=top, image_pe=sam2.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
        multimask_output=prompt.multimask, repeat_image=False, high_res_features=maps[:-1])
    best = int(ious[0].argmax())
    return PromptDecode(masks[:, best:best + 1].float(), float(ious[0, best]), prompt.multimask)


def prompt_logits(sam2: SAM2Base, feats: ImageFeatures, prompt: Prompt,
                  image_hw: tuple[int, int]) -> Tensor:
    """Logits (H, W) of the prompt's mask at the prompted image's size."""
    lowres = decode_prompt(sam2, feats, prompt, image_hw).lowres
    return F.interpolate(lowres, tuple(image_hw), mode="bilinear", align_corners=False)[0, 0]


def prompt_mask(sam2: SAM2Base, feats: ImageFeatures, prompt: Prompt,
                image_hw: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H, W) SAM 2 makes of the prompt (empty for an empty prompt)."""
    if prompt.empty:
        return np.zeros(tuple(image_hw), bool)
    return (prompt_logits(sam2, feats, prompt, image_hw) > MASK_THRESHOLD).cpu().numpy()


def has_prompts(batch: Mapping[str, Any]) -> bool:
    """Whether a batch carries support prompts instead of support masks."""
    return POINTS_KEY in batch or SCRIBBLES_KEY in batch


def batch_prompts(batch: Mapping[str, Any]) -> list[list[Prompt]]:
    """Per episode, per shot, the ``Prompt`` of the batch's support prompts (model frame):
    ``support_points`` (b, K, N, 2) with ``support_point_labels`` (b, K, N) (-1 pads), or
    ``support_scribbles`` (b, K, S, S)."""
    if POINTS_KEY in batch:
        points = batch[POINTS_KEY].cpu().numpy()
        labels = batch[LABELS_KEY].cpu().numpy()
        return [[Prompt(p[lab != PADDING], lab[lab != PADDING]) for p, lab in zip(pe, le)]
                for pe, le in zip(points, labels)]
    if SCRIBBLES_KEY in batch:
        return [[scribble_prompt(s > 0) for s in episode]
                for episode in batch[SCRIBBLES_KEY].cpu().numpy()]
    raise KeyError(f"the batch has no support prompts ({POINTS_KEY} or {SCRIBBLES_KEY})")


def batch_prompt_masks(sam2: SAM2Base, feats: ImageFeatures,
                       batch: Mapping[str, Any]) -> Tensor:
    """Support masks (b, K, S, S) int64 in {0, 1} of a batch's support prompts, given the
    support images' features (b*K images, episode by episode), one support at a time."""
    prompts = batch_prompts(batch)
    size = tuple(batch["support_imgs"].shape[-2:])
    device = batch["support_imgs"].device
    rows = []
    for e, episode in enumerate(prompts):
        for k, prompt in enumerate(episode):
            index = e * len(episode) + k
            mask = prompt_mask(sam2, feats.select(slice(index, index + 1)), prompt, size)
            rows.append(torch.from_numpy(mask))
    return torch.stack(rows).view(len(prompts), -1, *size).to(device, torch.int64)
