"""FSSAM: pseudo prompts (PPG), memory refinement (IMR) and calibrated attention (SCMA) on SAM 2."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from torch import Tensor, nn

from fssam.contract import (IGNORE_LABEL, Features, Memo, encoded, episode_image_ids,
                            sigmoid_foreground)
from fssam.models.fssam import prompts
from fssam.models.fssam import sam2_adapter as sam
from fssam.models.fssam.calibrated_attention import Calibration
from fssam.models.fssam.memory_refine import refine_memory
from fssam.models.fssam.prior import PseudoPromptGenerator
from fssam.models.losses import dice_loss
from fssam.models.trainable import load_exactly
from fssam.utils.fingerprint import weights_fingerprint

log = logging.getLogger(__name__)

TRAINABLE_MODULES = ("sam_mask_decoder", "memory_encoder", "memory_attention")
SAM2_ENCODER, DINO_ENCODER = "sam2", "dinov2"


def binarise_masks(masks: Tensor) -> Tensor:
    """Masks {0, 1, 255} -> float {0, 1} (ignore counts as background)."""
    return masks.float().masked_fill(masks == IGNORE_LABEL, 0)


class FSSAM(nn.Module):
    """Few-shot segmentation with SAM 2 for any number of shots K >= 1.

    ``sam2``: an unmodified SAM2Base (see ``sam2_adapter.build_sam2``); its memory-attention
    cross-attentions are swapped for calibrated ones (same parameters and keys).
    ``prior_generator``: DINOv2 pseudo prompts; may be None when every batch has ``priors``.
    ``fp32_calibration``: under autocast, compute the priors and the calibrated attention's
    logits, bias and softmax in float32 (their min-max normalisations keep more digits);
    False runs them in the autocast dtype, as the release does. Float32 runs are the same
    either way. Only SAM 2's mask decoder, memory encoder and memory attention are
    trainable.
    """

    def __init__(self, *, sam2: SAM2Base, prior_generator: PseudoPromptGenerator | None,
                 num_refine: int = 3, refine_version: str = "v1",
                 legacy_kshot: bool = False, fp32_calibration: bool = False) -> None:
        super().__init__()
        if refine_version not in ("v1", "v2"):
            raise ValueError(f"unknown refine_version {refine_version!r} (v1 or v2)")
        self.sam2 = sam2
        self.prior = prior_generator
        self.num_refine = num_refine
        self.refine_version = refine_version
        self.legacy_kshot = legacy_kshot
        self.fp32_calibration = fp32_calibration
        sam.install_calibrated_attention(sam2)
        self.requires_grad_(False)
        for name in TRAINABLE_MODULES:
            getattr(sam2, name).requires_grad_(True)

    # -- parameters -------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups: one per trainable SAM 2 module."""
        return [{"name": name, "params": list(getattr(self.sam2, name).parameters())}
                for name in TRAINABLE_MODULES]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """State of the trainable modules only (keys as in ``state_dict()``)."""
        prefixes = tuple(f"sam2.{name}." for name in TRAINABLE_MODULES)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Strictly load a ``trainable_state_dict()``; names every missing/unexpected key."""
        load_exactly(self, state, self.trainable_state_dict())

    @staticmethod
    def foreground(logits: Tensor) -> Tensor:
        """Foreground of logits at the label size: ``sigmoid >= 0.5`` (README: Metrics)."""
        return sigmoid_foreground(logits)

    def loss(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Dice of ``sigmoid(out["logits"])`` against ``batch["query_mask"] == 1``."""
        return {"loss": dice_loss(out["logits"].float(), batch["query_mask"])}

    def prior_cache_settings(self) -> dict[str, Any]:
        """What the pseudo-prompt priors depend on beyond the episode (the engine's on-disk
        prior cache keys them with it): DINOv2's variant, input size and weights."""
        if self.prior is None:
            raise ValueError("this FSSAM has no prior generator: its priors come with the batch")
        return {"dino_variant": self.prior.variant, "dino_input_size": self.prior.input_size,
                "dino_weights": weights_fingerprint(self.prior.dino),
                "fp32_priors": self.fp32_calibration}

    # -- frozen encoders (the engine's feature-cache protocol) ----------------------------
    def frozen_encoders(self) -> dict[str, str]:
        """Fingerprint of each frozen per-image encoder: ``sam2`` (SAM 2's backbone step,
        conv_s0/conv_s1 included) and, with a prior generator, ``dinov2``."""
        encoders = {SAM2_ENCODER: sam.backbone_fingerprint(self.sam2)}
        if self.prior is not None:
            encoders[DINO_ENCODER] = self.prior.fingerprint()
        return encoders

    @torch.no_grad()
    def encode_images(self, name: str, images: Tensor) -> dict[str, Tensor]:
        """Frozen encoder ``name`` on images (n, 3, H, W) in 0..255: SAM 2's ``level<l>`` maps
        (n, C_l, H_l, W_l), or DINOv2's ``patch_tokens`` (n, D, g, g)."""
        if name == SAM2_ENCODER:
            return {f"level{i}": m for i, m in enumerate(sam.backbone_maps(self.sam2, images))}
        if name == DINO_ENCODER and self.prior is not None:
            return {"patch_tokens": self.prior.extract_features(images)}
        raise KeyError(f"unknown encoder {name!r}; this model has {sorted(self.frozen_encoders())}")

    @torch.no_grad()
    def support_masks_from_prompts(self, batch: Mapping[str, Any], *,
                                   features: Features | None = None) -> Tensor:
        """Support masks (b, K, H, W) {0, 1} of the batch's support prompts (points or
        scribbles, ``prompts.batch_prompts``), made by this model's own SAM 2 (prompt
        encoder, mask decoder) on the supports' backbone features: ``features`` when given,
        the same the forward then reuses, so each image is encoded once."""
        maps = encoded(self, batch, features, SAM2_ENCODER)
        b = batch["query_img"].shape[0]
        feats = sam.features_from_maps(self.sam2, [maps[f"level{i}"][b:]
                                                   for i in range(len(maps))])
        return prompts.batch_prompt_masks(self.sam2, feats, batch)

    # -- forward ----------------------------------------------------------------------
    def compute_priors(self, batch: Mapping[str, Any], features: Features | None = None
                       ) -> Tensor:
        """``batch["priors"]`` [b,2,H,W] if given, else DINOv2 pseudo prompts."""
        if batch.get("priors") is not None:
            return batch["priors"].float()
        if self.prior is None:
            raise ValueError("the batch has no 'priors' and the model has no prior generator")
        masks = batch["support_masks"]
        b, shots = masks.shape[:2]
        tokens = encoded(self, batch, features, DINO_ENCODER)["patch_tokens"]
        prior_fg, prior_fb = self.prior.priors_from_features(
            tokens[:b], tokens[b:].unflatten(0, (b, shots)), masks,
            tuple(batch["query_img"].shape[-2:]), fp32=self.fp32_calibration)
        return torch.cat([prior_fg, prior_fb], dim=1)

    def forward(self, batch: Mapping[str, Any], return_intermediates: bool = False, *,
                features: Features | None = None, memo: Memo | None = None) -> dict[str, Any]:
        """``query_img`` [b,3,H,W], ``support_imgs`` [b,K,3,H,W] (0..255), ``support_masks``
        [b,K,H,W] {0,1,255}, optional ``priors`` [b,2,H,W] -> ``logits`` [b,H,W], ``priors``.

        ``features``: the frozen encoders' outputs (``fssam.engine.feature_cache``); without
        them the model encodes the images itself. ``memo``: support memories are then
        computed one support at a time and reused by (image name, mask).
        """
        query = batch["query_img"].float()
        b, shots = batch["support_imgs"].shape[:2]
        priors = self.compute_priors(batch, features)
        maps = encoded(self, batch, features, SAM2_ENCODER)
        feats = sam.features_from_maps(self.sam2, [maps[f"level{i}"] for i in range(len(maps))])
        masks = binarise_masks(batch["support_masks"]).flatten(0, 1).unsqueeze(1)
        support = self._support_memories(feats.select(slice(b, None)), masks, memo,
                                         episode_image_ids(batch)[b:])
        query_feats = feats.select(slice(0, b))
        inter = self._memories(query_feats, support, masks, priors, shots,
                               intermediates=return_intermediates)
        grid = feats.sizes[-1]
        attn_masks = F.interpolate(masks, size=grid, mode="nearest").view(b, shots, -1)
        calibration = Calibration(attn_masks, legacy_kshot=self.legacy_kshot,
                                  fp32=self.fp32_calibration)
        pix_feat = sam.attend_memory(self.sam2, query_feats, inter["bank"], calibration)
        decoded = sam.decode(self.sam2, pix_feat, query_feats.maps()[:-1], query.shape[-2:])
        out: dict[str, Any] = {"logits": decoded.logits, "priors": priors}
        if return_intermediates:
            inter.update(features=feats, attn_masks=attn_masks, pix_feat=pix_feat,
                         decoded=decoded)
            out["intermediates"] = inter
        return out

    def _support_memories(self, feats: sam.ImageFeatures, masks: Tensor, memo: Memo | None,
                          names: list[str | None]) -> dict[str, Tensor]:
        """``memory`` (n, M, h, w), ``pointer`` (n, C) and ``pointer_lowres`` of the n supports.

        With a memo, one support at a time, reused by (image name, mask content); the
        memo must only live while the weights are fixed (``PassMemo``).
        """
        if memo is None:
            return self._encode_supports(feats, masks)
        digests = [hashlib.blake2b(row.numpy(), digest_size=16).hexdigest()
                   for row in masks.flatten(1).cpu()]
        rows = []
        for i, (name, digest) in enumerate(zip(names, digests)):
            key = None if name is None else ("fssam.support", name, digest)
            rows.append(memo.compute(key, lambda i=i: self._encode_supports(
                feats.select(slice(i, i + 1)), masks[i:i + 1])))
        return {k: torch.cat([row[k] for row in rows]) for k in rows[0]}

    def _encode_supports(self, feats: sam.ImageFeatures, masks: Tensor) -> dict[str, Tensor]:
        lowres, pointer = sam.mask_prompt_pointers(self.sam2, feats, masks)
        memory, _ = sam.encode_mask_memory(self.sam2, feats, masks)
        return {"memory": memory, "pointer": pointer, "pointer_lowres": lowres}

    def _memories(self, query_feats: sam.ImageFeatures, support: dict[str, Tensor],
                  masks: Tensor, priors: Tensor, shots: int, *,
                  intermediates: bool = False) -> dict[str, Any]:
        """Query memories, the refinement and the memory bank; with ``intermediates`` also
        every memory, pointer and position (supports, then the query's two) joined.

        SAM 2's memory positional encoding is the sine encoding of the memory grid, the same
        for every memory: the supports share the query's.
        """
        b = priors.shape[0]
        q_lowres, q_pointer = sam.mask_prompt_pointers(self.sam2, query_feats, priors[:, 1:])
        q_mems, q_pos = sam.encode_mask_memory(
            self.sam2, sam.ImageFeatures.cat([query_feats, query_feats]),
            torch.cat([priors[:, :1], priors[:, 1:]]))
        grid = query_feats.sizes[-1]
        masks_grid = F.interpolate(masks, size=grid, mode="bilinear", align_corners=True)
        priors_grid = F.interpolate(priors, size=grid, mode="bilinear", align_corners=True)
        support_mem = support["memory"].unflatten(0, (b, shots))
        refined = refine_memory(
            q_mems[:b], q_mems[b:], support_mem, masks_grid.unflatten(0, (b, shots)),
            priors_grid[:, :1], priors_grid[:, 1:], iterations=self.num_refine,
            version=self.refine_version)
        pos = q_pos[b:].unsqueeze(1).expand(-1, shots + 1, -1, -1, -1)
        bank = sam.memory_bank(
            self.sam2, torch.cat([support_mem, refined.mem_fb.unsqueeze(1)], dim=1), pos,
            torch.cat([support["pointer"].unflatten(0, (b, shots)), q_pointer.unsqueeze(1)], 1))
        inter = {"masks_grid": masks_grid, "priors_grid": priors_grid, "refine": refined,
                 "bank": bank}
        if intermediates:
            inter.update(pointer_lowres=torch.cat([support["pointer_lowres"], q_lowres]),
                         pointers=torch.cat([support["pointer"], q_pointer]),
                         memories=torch.cat([support["memory"], q_mems]),
                         memory_pos=torch.cat([pos[:, :shots].flatten(0, 1), q_pos]))
        return inter
