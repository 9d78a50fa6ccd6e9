"""Support masks from a user's prompts, for predict.py and the app.

The SAM 2 that turns prompts into masks is the model's own when it holds one (FSSAM: its
prompt encoder and mask decoder, on the backbone features the model caches, so a support
image is encoded once for its prompt and for every query), else a SAM 2 given for the
purpose (HMNet: ``--sam2-config`` / ``--sam2-checkpoint``). Images are named by their
content (``content_id``), so the cache finds an image again whatever its file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

from fssam.contract import supports_feature_cache
from fssam.data.support_prompts import Prompt
from fssam.data.transforms import eval_transform_name
from fssam.data.user_images import InputError, Support, to_model_input
from fssam.engine.evaluate import autocast
from fssam.engine.feature_cache import BatchFeatures, FeatureCache
from fssam.models.fssam import sam2_adapter as sam
from fssam.models.fssam.prompts import prompt_mask

log = logging.getLogger(__name__)

SAM2_ENCODER = "sam2"


def content_id(rgb: np.ndarray, size: int) -> str:
    """Name of the model input an RGB image gives at ``size``: a hash of its pixels."""
    digest = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).hexdigest()
    return f"rgb:{digest}:{rgb.shape[0]}x{rgb.shape[1]}|{eval_transform_name(size)}"


class SAM2Encoder(nn.Module):
    """A SAM 2 of its own as a frozen encoder of the feature-cache protocol (``sam2``)."""

    def __init__(self, sam2: SAM2Base) -> None:
        super().__init__()
        self.sam2 = sam2

    def frozen_encoders(self) -> dict[str, str]:
        return {SAM2_ENCODER: sam.backbone_fingerprint(self.sam2)}

    @torch.no_grad()
    def encode_images(self, name: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if name != SAM2_ENCODER:
            raise KeyError(f"unknown encoder {name!r}; this one is {SAM2_ENCODER!r}")
        return {f"level{i}": m for i, m in enumerate(sam.backbone_maps(self.sam2, images))}


@dataclass
class PromptSAM2:
    """A SAM 2 for prompts and where its image features come from (``encoder``: the model
    itself, or a ``SAM2Encoder``), with their cache."""

    sam2: SAM2Base
    encoder: nn.Module
    cache: FeatureCache
    own: bool  # the model's own SAM 2

    @property
    def image_size(self) -> int:
        return int(self.sam2.image_size)


def prompt_sam2(model: nn.Module, cache: FeatureCache, device: torch.device, *,
                amp_dtype: torch.dtype | None = None, sam2_config: str | None = None,
                sam2_checkpoint: str | None = None) -> PromptSAM2:
    """The model's own SAM 2 (sharing ``cache``), else one built from the given config and
    weights (at the config's input size, with a cache of its own). The cache is readied
    for the encoder (``begin_pass``: it fingerprints the weights, once)."""
    own = getattr(model, "sam2", None)
    if isinstance(own, SAM2Base) and supports_feature_cache(model):
        cache.begin_pass(model, device, amp_dtype)
        return PromptSAM2(own, model, cache, True)
    if sam2_config is None:
        raise InputError(
            f"the model ({type(model).__name__}) holds no SAM 2 to turn support prompts into "
            f"masks: give support masks (or filled boxes), or a SAM 2 for the prompts with "
            f"--sam2-config and --sam2-checkpoint")
    sam2 = sam.build_sam2(sam2_config, sam2_checkpoint, image_size=None).to(device).eval()
    encoder = SAM2Encoder(sam2)
    own_cache = FeatureCache(size_gb=cache.store.budget / 2**30)
    own_cache.begin_pass(encoder, device, amp_dtype)
    return PromptSAM2(sam2, encoder, own_cache, False)


def support_mask(prompter: PromptSAM2, rgb: np.ndarray, prompt: Prompt, *,
                 device: torch.device, amp_dtype: torch.dtype | None = None,
                 name: str = "support") -> np.ndarray:
    """Boolean mask (H, W) SAM 2 makes of ``prompt`` on the RGB image (H, W, 3); its
    features come from the prompter's cache (computed on a miss)."""
    size = prompter.image_size
    image = to_model_input(rgb, None, size, name)[0][None].to(device)
    features = BatchFeatures(prompter.encoder, image, [content_id(rgb, size)], prompter.cache)
    with torch.no_grad(), autocast(device, amp_dtype):
        maps = features.get(SAM2_ENCODER)
        feats = sam.features_from_maps(prompter.sam2, [maps[f"level{i}"]
                                                       for i in range(len(maps))])
        return prompt_mask(prompter.sam2, feats, prompt, tuple(rgb.shape[:2]))



def support_mask_name(index: int, image_path: Path) -> str:
    """File name of the mask SAM 2 made for support ``index`` (from 1)."""
    return f"support{index}_{Path(image_path).stem}_mask.png"


def prompted_supports(prompter: PromptSAM2, prompts: Sequence[tuple[Path, np.ndarray, Prompt]],
                      output: Path, *, device: torch.device,
                      amp_dtype: torch.dtype | None = None) -> list[Support]:
    """Supports masked by SAM 2 from their prompts; each mask is written to ``output``
    (``support_mask_name``, 0/255). An empty mask is an error, after all are written."""
    output.mkdir(parents=True, exist_ok=True)
    supports, empty = [], []
    for index, (path, rgb, prompt) in enumerate(prompts, 1):
        mask = support_mask(prompter, rgb, prompt, device=device, amp_dtype=amp_dtype,
                            name=str(path))
        target = output / support_mask_name(index, path)
        if not cv2.imwrite(str(target), mask.astype(np.uint8) * 255):
            raise OSError(f"cannot write {target}")
        log.info("%s: SAM 2 support mask, %.1f%% of the image -> %s", path, 100 * mask.mean(),
                 target)
        empty += [] if mask.any() else [str(path)]
        supports.append(Support(path, rgb, mask.astype(np.uint8)))
    if empty:
        raise InputError(f"SAM 2 made an empty mask of the prompt on {', '.join(empty)}: move "
                         f"or add clicks, or give a mask")
    return supports
