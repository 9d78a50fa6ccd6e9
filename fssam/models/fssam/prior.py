"""Pseudo Prompt Generator (PPG): frozen DINOv2 features -> query priors (README: The model).

``generate_priors`` is the prior math on given features; ``PseudoPromptGenerator`` runs DINOv2
(timm) on the images first. ``load_dinov2_state_dict`` maps weights in the original DINOv2 key
format onto the timm model, with DINOv2's own position-embedding resize.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from fssam.contract import IGNORE_LABEL
from fssam.utils.fingerprint import state_fingerprint

log = logging.getLogger(__name__)

TIMM_NAMES = {
    "vitb14": "vit_base_patch14_dinov2",
    "vitl14": "vit_large_patch14_dinov2",
    "vitg14": "vit_giant_patch14_dinov2",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROTOTYPE_EPS = 5e-4
COSINE_EPS = 1e-7
POS_EMBED_OFFSET = 0.1  # DINOv2 resizes its grid with scale (new + 0.1) / old


def checkpoint_filename(variant: str) -> str:
    """Name of the original DINOv2 release file for ``variant`` ("vitb14", ...)."""
    return f"dinov2_{variant}_pretrain.pth"


def _minmax(x: Tensor) -> Tensor:
    """Min-max normalise over the last two (spatial) dimensions."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo + COSINE_EPS)


def masked_average(feats: Tensor, weights: Tensor) -> Tensor:
    """Prototype ``Σ f·m / (Σ m + 5e-4)`` over positions: [..., D, h, w], [..., 1, h, w] -> [..., D]."""
    return (feats * weights).sum(dim=(-2, -1)) / (weights.sum(dim=(-2, -1)) + PROTOTYPE_EPS)


def _similarity(query_feat: Tensor, prototypes: Tensor) -> Tensor:
    """Cosine similarity of [b,D,h,w] with prototypes [b,K,D], min-max normalised -> [b,K,h,w]."""
    dot = torch.einsum("bdhw,bkd->bkhw", query_feat, prototypes)
    norms = query_feat.norm(dim=1).unsqueeze(1) * prototypes.norm(dim=-1)[..., None, None]
    return _minmax(dot / (norms + COSINE_EPS))


def per_shot_priors(query_feat: Tensor, support_feats: Tensor, support_masks: Tensor,
                    out_size: int | tuple[int, int]) -> dict[str, Tensor]:
    """Priors of every shot before averaging: ``fg_corr``, ``bg_corr``, ``corr``, each [b,K,S,S].

    query_feat [b,D,h,w], support_feats [b,K,D,h,w], support_masks [b,K,1,h,w] (soft, in
    [0,1]). ``fg_corr`` is prior_fg and ``corr`` prior_fb of each shot.
    """
    fg_protos = masked_average(support_feats, support_masks)
    bg_protos = masked_average(support_feats, 1 - support_masks)
    sims = _similarity(query_feat, torch.cat([fg_protos, bg_protos], dim=1))
    sims = F.interpolate(sims, size=out_size, mode="bilinear", align_corners=True)
    fg_corr, bg_corr = sims.chunk(2, dim=1)
    corr = _minmax(torch.relu(fg_corr - bg_corr))
    return {"fg_corr": fg_corr, "bg_corr": bg_corr, "corr": corr}


def generate_priors(query_feat: Tensor, support_feats: Tensor, support_masks: Tensor,
                    out_size: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Query priors ``(prior_fg, prior_fb)``, each [b,1,S,S], averaged over the K shots."""
    maps = per_shot_priors(query_feat, support_feats, support_masks, out_size)
    return maps["fg_corr"].mean(dim=1, keepdim=True), maps["corr"].mean(dim=1, keepdim=True)


def resize_pos_embed_dinov2(pos_embed: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """Resize a [1, 1+M*M, D] position embedding to ``grid_size`` the way DINOv2 does.

    Bicubic, no antialias, ``scale_factor = (new + 0.1) / M``; the class token is kept.
    """
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    side = int(round(patch_pos.shape[1] ** 0.5))
    if side * side != patch_pos.shape[1]:
        raise ValueError(f"position embedding of {patch_pos.shape[1]} patches is not a square grid")
    if (side, side) == tuple(grid_size):
        return pos_embed
    dim = patch_pos.shape[-1]
    grid = patch_pos.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = tuple((g + POS_EMBED_OFFSET) / side for g in grid_size)
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
    if tuple(grid.shape[-2:]) != tuple(grid_size):
        raise ValueError(f"resized grid {tuple(grid.shape[-2:])} != {tuple(grid_size)}")
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


def load_dinov2_state_dict(model: VisionTransformer, state_dict: Mapping[str, Tensor]) -> None:
    """Load DINOv2 weights in the original key format into a timm DINOv2 ``model``.

    The position embedding is first resized to the model's grid with
    ``resize_pos_embed_dinov2`` (so timm does not resize it its own way), then keys are
    mapped by timm's ``checkpoint_filter_fn``. Every key must match: a
    missing, unexpected or mis-shaped key raises a KeyError naming all of them.
    """
    if "pos_embed" not in state_dict:
        raise KeyError("DINOv2 state dict has no 'pos_embed'; is it in the original format?")
    source = dict(state_dict)  # timm's filter pops keys from the dict it is given
    source["pos_embed"] = resize_pos_embed_dinov2(source["pos_embed"],
                                                  tuple(model.patch_embed.grid_size))
    converted = checkpoint_filter_fn(source, model)
    expected = model.state_dict()
    missing = sorted(expected.keys() - converted.keys())
    unexpected = sorted(converted.keys() - expected.keys())
    mis_shaped = sorted(f"{k} {tuple(converted[k].shape)} vs {tuple(v.shape)}"
                        for k, v in expected.items()
                        if k in converted and converted[k].shape != v.shape)
    if missing or unexpected or mis_shaped:
        raise KeyError(f"DINOv2 weights do not match the model: missing {missing}, "
                       f"unexpected {unexpected}, shape mismatch {mis_shaped}")
    model.load_state_dict(converted, strict=True)


def load_dinov2_checkpoint(model: VisionTransformer, path: str | Path, variant: str) -> None:
    """Load an original DINOv2 release file (e.g. ``dinov2_vitb14_pretrain.pth``) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DINOv2 weights {path} not found (expected the original release file "
            f"{checkpoint_filename(variant)}); get it with "
            f"`python scripts/download_weights.py --only dinov2_{variant}`")
    load_dinov2_state_dict(model, torch.load(path, map_location="cpu", weights_only=True))
    log.info("loaded DINOv2 %s weights from %s", variant, path)


def build_dinov2(variant: str, input_size: int, model_kwargs: dict | None = None
                 ) -> VisionTransformer:
    """timm DINOv2 ViT with an ``input_size`` grid and random weights (nothing is fetched)."""
    if variant not in TIMM_NAMES:
        raise ValueError(f"unknown DINOv2 variant {variant!r}; choose from {sorted(TIMM_NAMES)}")
    return timm.create_model(TIMM_NAMES[variant], pretrained=False, img_size=input_size,
                             num_classes=0, **(model_kwargs or {}))


class PseudoPromptGenerator(nn.Module):
    """Frozen DINOv2 that turns a query and K annotated supports into ``(prior_fg, prior_fb)``.

    ``checkpoint`` is the original DINOv2 release file; None gives random weights (tests and
    demo only). ``model_kwargs`` override timm's architecture arguments (e.g. a tiny ViT).
    """

    def __init__(self, *, variant: str = "vitb14", checkpoint: str | Path | None,
                 input_size: int = 560, model_kwargs: dict | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.input_size = input_size
        self.dino = build_dinov2(variant, input_size, model_kwargs)
        if checkpoint is None:
            log.warning("DINOv2 %s has RANDOM weights (no checkpoint given): priors are "
                        "meaningless outside tests and demos", variant)
        else:
            load_dinov2_checkpoint(self.dino, checkpoint, variant)
        self.dino.requires_grad_(False)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> PseudoPromptGenerator:
        """Always stays in eval mode: DINOv2 is frozen."""
        return super().train(False)

    def fingerprint(self) -> str:
        """Fingerprint of everything ``extract_features`` depends on: weights, input size,
        normalisation."""
        return state_fingerprint({"dino": self.dino, "pixel_mean": self.pixel_mean,
                                  "pixel_std": self.pixel_std},
                                 {"output": "dinov2 last-block normalised patch tokens",
                                  "input_size": self.input_size})

    def extract_features(self, images: Tensor) -> Tensor:
        """Last block's normalised patch tokens [n,D,g,g] of images [n,3,H,W] in 0..255."""
        size = (self.input_size, self.input_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=True)
        images = (images - self.pixel_mean) / self.pixel_std
        return self.dino.forward_intermediates(images, indices=1, norm=True, output_fmt="NCHW",
                                               intermediates_only=True)[-1]

    @torch.no_grad()
    def priors_from_features(self, query_feat: Tensor, support_feats: Tensor,
                             support_masks: Tensor, out_size: tuple[int, int],
                             fp32: bool = False) -> tuple[Tensor, Tensor]:
        """``extract_features`` output of the queries [b,D,g,g] and supports [b,K,D,g,g],
        support_masks [b,K,H,W] {0,1,255} -> ``(prior_fg, prior_fb)``, each [b,1,*out_size].

        ``fp32``: computed in float32 even under autocast; otherwise in the autocast dtype,
        as the release computes them."""
        b, k = support_masks.shape[:2]
        masks = support_masks.float().masked_fill(support_masks == IGNORE_LABEL, 0)
        masks = F.interpolate(masks.flatten(0, 1).unsqueeze(1), size=query_feat.shape[-2:],
                              mode="bilinear", align_corners=True).unflatten(0, (b, k))
        if not fp32:
            priors = generate_priors(query_feat, support_feats, masks, out_size)
            return priors[0].float(), priors[1].float()
        with torch.autocast(query_feat.device.type, enabled=False):
            return generate_priors(query_feat.float(), support_feats.float(), masks, out_size)

    @torch.no_grad()
    def forward(self, query_img: Tensor, support_imgs: Tensor, support_masks: Tensor
                ) -> tuple[Tensor, Tensor]:
        """query_img [b,3,H,W], support_imgs [b,K,3,H,W] (0..255), support_masks [b,K,H,W]
        {0,1,255} -> ``(prior_fg, prior_fb)``, each [b,1,H,W] in [0,1]."""
        b, k = support_imgs.shape[:2]
        feats = self.extract_features(torch.cat([query_img, support_imgs.flatten(0, 1)]))
        return self.priors_from_features(feats[:b], feats[b:].unflatten(0, (b, k)),
                                         support_masks, tuple(query_img.shape[-2:]))
