"""FSSAM: pseudo prompts (PPG), memory refinement (IMR) and calibrated attention (SCMA) on SAM 2."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from torch import Tensor, nn

from fssam.models.fssam import sam2_adapter as sam
from fssam.models.fssam.calibrated_attention import Calibration
from fssam.models.fssam.memory_refine import refine_memory
from fssam.models.fssam.prior import PseudoPromptGenerator
from fssam.models.losses import dice_loss

log = logging.getLogger(__name__)

IGNORE_LABEL = 255
TRAINABLE_MODULES = ("sam_mask_decoder", "memory_encoder", "memory_attention")


def binarise_masks(masks: Tensor) -> Tensor:
    """Masks {0, 1, 255} -> float {0, 1} (ignore counts as background)."""
    return masks.float().masked_fill(masks == IGNORE_LABEL, 0)


class FSSAM(nn.Module):
    """Few-shot segmentation with SAM 2 for any number of shots K >= 1.

    ``sam2``: an unmodified SAM2Base (see ``sam2_adapter.build_sam2``); its memory-attention
    cross-attentions are swapped for calibrated ones (same parameters and keys).
    ``prior_generator``: DINOv2 pseudo prompts; may be None when every batch has ``priors``.
    Only SAM 2's mask decoder, memory encoder and memory attention are trainable.
    """

    def __init__(self, *, sam2: SAM2Base, prior_generator: PseudoPromptGenerator | None,
                 num_refine: int = 3, refine_version: str = "v1",
                 legacy_kshot: bool = False) -> None:
        super().__init__()
        if refine_version not in ("v1", "v2"):
            raise ValueError(f"unknown refine_version {refine_version!r} (v1 or v2)")
        self.sam2 = sam2
        self.prior = prior_generator
        self.num_refine = num_refine
        self.refine_version = refine_version
        self.legacy_kshot = legacy_kshot
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
        expected = self.trainable_state_dict()
        missing = sorted(expected.keys() - state.keys())
        unexpected = sorted(state.keys() - expected.keys())
        if missing or unexpected:
            raise KeyError(f"trainable state dict mismatch: missing {missing}, "
                           f"unexpected {unexpected}")
        self.load_state_dict(dict(state), strict=False)

    def loss(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Dice of ``sigmoid(out["logits"])`` against ``batch["query_mask"] == 1``."""
        return {"loss": dice_loss(out["logits"].float(), batch["query_mask"])}

    # -- forward ----------------------------------------------------------------------
    def compute_priors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch["priors"]`` [b,2,H,W] if given, else DINOv2 pseudo prompts."""
        if batch.get("priors") is not None:
            return batch["priors"].float()
        if self.prior is None:
            raise ValueError("the batch has no 'priors' and the model has no prior generator")
        prior_fg, prior_fb = self.prior(batch["query_img"], batch["support_imgs"],
                                        batch["support_masks"])
        return torch.cat([prior_fg, prior_fb], dim=1)

    def forward(self, batch: Mapping[str, Tensor], return_intermediates: bool = False
                ) -> dict[str, Any]:
        """``query_img`` [b,3,H,W], ``support_imgs`` [b,K,3,H,W] (0..255), ``support_masks``
        [b,K,H,W] {0,1,255}, optional ``priors`` [b,2,H,W] -> ``logits`` [b,H,W], ``priors``.
        """
        query, supports = batch["query_img"].float(), batch["support_imgs"].float()
        b, shots = supports.shape[:2]
        priors = self.compute_priors(batch)
        feats = sam.image_features(self.sam2, torch.cat([query, supports.flatten(0, 1)]))
        masks = binarise_masks(batch["support_masks"]).flatten(0, 1).unsqueeze(1)
        inter = self._memories(feats, masks, priors, b, shots)
        grid = feats.sizes[-1]
        attn_masks = F.interpolate(masks, size=grid, mode="nearest").view(b, shots, -1)
        calibration = Calibration(attn_masks, legacy_kshot=self.legacy_kshot)
        query_feats = feats.select(slice(0, b))
        pix_feat = sam.attend_memory(self.sam2, query_feats, inter["bank"], calibration)
        decoded = sam.decode(self.sam2, pix_feat, query_feats.maps()[:-1], query.shape[-2:])
        out: dict[str, Any] = {"logits": decoded.logits, "priors": priors}
        if return_intermediates:
            inter.update(features=feats, attn_masks=attn_masks, pix_feat=pix_feat,
                         decoded=decoded)
            out["intermediates"] = inter
        return out

    def _memories(self, feats: sam.ImageFeatures, masks: Tensor, priors: Tensor, b: int,
                  shots: int) -> dict[str, Any]:
        """Support and query memories, the refinement and the memory bank."""
        query_feats, support_feats = feats.select(slice(0, b)), feats.select(slice(b, None))
        ptr_lowres, ptrs = sam.mask_prompt_pointers(
            self.sam2, sam.ImageFeatures.cat([support_feats, query_feats]),
            torch.cat([masks, priors[:, 1:]]))
        mems, mem_pos = sam.encode_mask_memory(
            self.sam2, sam.ImageFeatures.cat([support_feats, query_feats, query_feats]),
            torch.cat([masks, priors[:, :1], priors[:, 1:]]))
        n = b * shots
        grid = feats.sizes[-1]
        masks_grid = F.interpolate(masks, size=grid, mode="bilinear", align_corners=True)
        priors_grid = F.interpolate(priors, size=grid, mode="bilinear", align_corners=True)
        support_mem = mems[:n].unflatten(0, (b, shots))
        refined = refine_memory(
            mems[n:n + b], mems[n + b:], support_mem, masks_grid.unflatten(0, (b, shots)),
            priors_grid[:, :1], priors_grid[:, 1:], iterations=self.num_refine,
            version=self.refine_version)
        bank = sam.memory_bank(
            self.sam2,
            torch.cat([support_mem, refined.mem_fb.unsqueeze(1)], dim=1),
            torch.cat([mem_pos[:n].unflatten(0, (b, shots)), mem_pos[n + b:].unsqueeze(1)], 1),
            torch.cat([ptrs[:n].unflatten(0, (b, shots)), ptrs[n:].unsqueeze(1)], dim=1))
        return {"pointer_lowres": ptr_lowres, "pointers": ptrs, "memories": mems,
                "memory_pos": mem_pos, "masks_grid": masks_grid, "priors_grid": priors_grid,
                "refine": refined, "bank": bank}
