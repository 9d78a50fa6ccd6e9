"""Everything FSSAM needs from an unmodified ``sam2==1.1.0`` ``SAM2Base``.

All extension points of SAM 2 live here: building it from a v1 config, batched backbone
features, mask prompt -> memory, the memory bank, the calibrated memory attention call and
the ungated decode. The package itself is never edited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import sam2
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sam2.modeling.sam2_base import SAM2Base
from torch import Tensor

from fssam.models.fssam.calibrated_attention import CalibratedRoPEAttention, Calibration, calibrated
from fssam.utils.fingerprint import state_fingerprint

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The post-processing overrides of sam2's video-predictor builder that change SAM2Base.
VIDEO_PREDICTOR_OVERRIDES = {
    "sam_mask_decoder_extra_args": {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    },
    "binarize_mask_from_pts_for_mem_enc": True,
}


def resolve_config(config: str) -> Path:
    """Path of a yaml file, of a config shipped with sam2 (``sam2_hiera_s.yaml``) or of one
    shipped with fssam (``sam2_micro.yaml``, a tiny model for CPU tests and the demo)."""
    path = Path(config)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    sam2_dir = Path(sam2.__file__).parent
    own_dir = Path(__file__).parent / "sam2_configs"
    for candidate in (sam2_dir / config, sam2_dir / "configs" / "sam2" / path.name,
                      own_dir / path.name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"SAM 2 config {config!r} not found: give a yaml file path, one of the sam2 "
        f"package's v1 configs (sam2_hiera_t.yaml, sam2_hiera_s.yaml, sam2_hiera_b+.yaml, "
        f"sam2_hiera_l.yaml) or sam2_micro.yaml")


def build_sam2(config: str, checkpoint: str | None = None, *,
               image_size: int | None = 512) -> SAM2Base:
    """Build SAM2Base from a v1 config with the video-predictor overrides, in eval mode.

    ``image_size=None`` keeps the config's size. ``checkpoint`` is a ``{"model": sd}``
    file loaded strictly; ``None`` leaves the random initialisation.
    """
    cfg = OmegaConf.load(resolve_config(config))
    model_cfg = cfg.model
    if image_size is not None:
        model_cfg.image_size = image_size
    grid = int(model_cfg.image_size) // int(model_cfg.get("backbone_stride", 16))
    layer_cfg = model_cfg.memory_attention.layer
    for attn in ("self_attention", "cross_attention"):
        layer_cfg[attn].feat_sizes = [grid, grid]
    model_cfg.merge_with(OmegaConf.create(VIDEO_PREDICTOR_OVERRIDES))
    OmegaConf.resolve(cfg)
    model: SAM2Base = instantiate(model_cfg, _recursive_=True)
    if checkpoint is None:
        log.warning("SAM 2 built without a checkpoint: random weights")
    else:
        load_sam2_checkpoint(model, checkpoint)
    return model.eval()


def load_sam2_checkpoint(model: SAM2Base, checkpoint: str) -> None:
    """Load a ``{"model": state_dict}`` SAM 2 checkpoint strictly."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"SAM 2 checkpoint {checkpoint!r} not found (scripts/download_weights.py "
            f"downloads the v1 checkpoints into pretrained/)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state, strict=True)
    log.info("loaded SAM 2 weights from %s", checkpoint)


@dataclass
class ImageFeatures:
    """SAM 2 backbone output, sequence-first as SAM 2 keeps it: level l is (HW_l, n, C_l).

    ``top_pos`` is the positional encoding of the top (lowest-resolution) level, the only
    one FSSAM uses (memory attention); the high-resolution levels need none.
    """

    feats: list[Tensor]
    top_pos: Tensor
    sizes: list[tuple[int, int]]

    def select(self, index: slice | Tensor) -> ImageFeatures:
        """Features of the images ``index`` (along the batch axis)."""
        return ImageFeatures([f[:, index] for f in self.feats], self.top_pos[:, index],
                             self.sizes)

    @staticmethod
    def cat(parts: list[ImageFeatures]) -> ImageFeatures:
        """Concatenate along the batch axis."""
        levels = range(len(parts[0].feats))
        return ImageFeatures([torch.cat([p.feats[i] for p in parts], 1) for i in levels],
                             torch.cat([p.top_pos for p in parts], 1), parts[0].sizes)

    def maps(self) -> list[Tensor]:
        """Every level as (n, C_l, H_l, W_l)."""
        return [f.permute(1, 2, 0).unflatten(2, s) for f, s in zip(self.feats, self.sizes)]

    @property
    def top_pos_map(self) -> Tensor:
        return self.top_pos.permute(1, 2, 0).unflatten(2, self.sizes[-1])


def normalise_images(images: Tensor) -> Tensor:
    """RGB 0..255 -> SAM 2 input (x/255, ImageNet mean/std)."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images / 255.0 - mean) / std


@torch.no_grad()
def backbone_maps(sam2: SAM2Base, images: Tensor) -> list[Tensor]:
    """The image-dependent backbone output of images (n, 3, H, W) in 0..255: the
    ``num_feature_levels`` feature maps (n, C_l, H_l, W_l), high resolution first, without
    gradient. Includes the decoder's conv_s0/conv_s1 projections ``forward_image`` applies.
    """
    maps = sam2.forward_image(normalise_images(images))["backbone_fpn"]
    return list(maps[-sam2.num_feature_levels:])


def backbone_fingerprint(sam2: SAM2Base) -> str:
    """Fingerprint of everything ``backbone_maps`` depends on: the image encoder, the
    decoder's conv_s0/conv_s1 when SAM 2 applies them, the levels kept, the normalisation."""
    parts: dict[str, torch.nn.Module] = {"image_encoder": sam2.image_encoder}
    if sam2.use_high_res_features_in_sam:
        parts.update(conv_s0=sam2.sam_mask_decoder.conv_s0, conv_s1=sam2.sam_mask_decoder.conv_s1)
    return state_fingerprint(parts, {"output": "sam2 backbone maps",
                                     "num_feature_levels": sam2.num_feature_levels,
                                     "mean": IMAGENET_MEAN, "std": IMAGENET_STD})


def features_from_maps(sam2: SAM2Base, maps: list[Tensor]) -> ImageFeatures:
    """``ImageFeatures`` of ``backbone_maps``' output, flattened as
    ``_prepare_backbone_features`` does.

    The top level's positional encoding is what SAM 2's neck gives it: the sine encoding of
    the grid (a function of the grid size only) in the map's dtype, so it is recomputed here
    instead of being kept per image.
    """
    top = maps[-1]
    with torch.no_grad():
        pos = sam2.image_encoder.neck.position_encoding(top).to(top.dtype)
    return ImageFeatures([m.flatten(2).permute(2, 0, 1) for m in maps],
                         pos.flatten(2).permute(2, 0, 1), [tuple(m.shape[-2:]) for m in maps])


def image_features(sam2: SAM2Base, images: Tensor) -> ImageFeatures:
    """Backbone features of a batch of images (b, 3, H, W) in 0..255, without gradient."""
    return features_from_maps(sam2, backbone_maps(sam2, images))


# ``_use_mask_as_output`` turns a mask prompt into logits ``20*mask - 10``.
MASK_LOGIT_SCALE, MASK_LOGIT_BIAS = 20.0, -10.0


def mask_prompt_pointers(sam2: SAM2Base, feats: ImageFeatures, masks: Tensor
                         ) -> tuple[Tensor, Tensor]:
    """Mask prompts (n, 1, H, W) in [0, 1] -> (low-res logits (n, 1, H/4, W/4), pointer (n, C)).

    ``_use_mask_as_output``: SAM heads on the downsampled mask give the pointer; the
    learned no-object pointer is used where the mask has no positive pixel.
    """
    maps = feats.maps()
    low_res, _, _, _, _, obj_ptr, _ = sam2._use_mask_as_output(maps[-1], maps[:-1], masks)
    return low_res, obj_ptr


def encode_mask_memory(sam2: SAM2Base, feats: ImageFeatures, masks: Tensor
                       ) -> tuple[Tensor, Tensor]:
    """Mask prompts (n, 1, H, W) in [0, 1] -> memory and memory pos-enc, each (n, M, h, w).

    ``_encode_new_memory`` on the logits ``_use_mask_as_output`` makes of the masks, with
    its object score (+10 where the mask has a positive pixel, else -10).
    """
    logits = masks.float() * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS
    present = (masks.flatten(1) > 0).any(1, keepdim=True).float()
    obj_score = present * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS
    mem, mem_pos = sam2._encode_new_memory(
        current_vision_feats=feats.feats, feat_sizes=feats.sizes, pred_masks_high_res=logits,
        object_score_logits=obj_score, is_mask_from_pts=False)
    return mem, mem_pos[-1]


@dataclass
class MemoryBank:
    """Cross-attention input of SAM 2's memory attention, sequence-first."""

    memory: Tensor  # (T, b, M)
    pos: Tensor  # (T, b, M)
    num_ptr_tokens: int


def memory_bank(sam2: SAM2Base, mems: Tensor, mem_pos: Tensor, obj_ptrs: Tensor) -> MemoryBank:
    """Bank of F memory frames and their F object pointers, as SAM 2 assembles it.

    ``mems``/``mem_pos`` (b, F, M, h, w); ``obj_ptrs`` (b, F, C). Every frame is a
    conditioning frame at distance 0 (pos-enc + ``maskmem_tpos_enc[num_maskmem-1]``);
    each C-dim pointer becomes C/M consecutive tokens with zero pos-enc.
    """
    b, frames, mem_dim = mems.shape[:3]
    memory = mems.flatten(3).permute(1, 3, 0, 2).flatten(0, 1)  # (F*hw, b, M)
    tpos = sam2.maskmem_tpos_enc[sam2.num_maskmem - 1]  # (1, 1, M)
    pos = mem_pos.flatten(3).permute(1, 3, 0, 2).flatten(0, 1) + tpos
    ptrs = obj_ptrs.transpose(0, 1)  # (F, b, C)
    if mem_dim < ptrs.shape[-1]:
        ptrs = ptrs.unflatten(2, (-1, mem_dim)).permute(0, 2, 1, 3).flatten(0, 1)
    return MemoryBank(torch.cat([memory, ptrs]), torch.cat([pos, torch.zeros_like(ptrs)]),
                      ptrs.shape[0])


def install_calibrated_attention(sam2: SAM2Base) -> None:
    """Put a ``CalibratedRoPEAttention`` in place of every memory-attention cross-attention."""
    for layer in sam2.memory_attention.layers:
        if not isinstance(layer.cross_attn_image, CalibratedRoPEAttention):
            layer.cross_attn_image = CalibratedRoPEAttention(layer.cross_attn_image)


def attend_memory(sam2: SAM2Base, query: ImageFeatures, bank: MemoryBank,
                  calibration: Calibration) -> Tensor:
    """SAM 2's memory attention with calibrated cross-attention -> (b, C, h, w)."""
    layers = [layer.cross_attn_image for layer in sam2.memory_attention.layers]
    if not all(isinstance(layer, CalibratedRoPEAttention) for layer in layers):
        raise RuntimeError("call install_calibrated_attention(sam2) first")
    with calibrated(layers, calibration):
        out = sam2.memory_attention(curr=query.feats[-1:], curr_pos=[query.top_pos],
                                    memory=bank.memory, memory_pos=bank.pos,
                                    num_obj_ptr_tokens=bank.num_ptr_tokens)
    return out.permute(1, 2, 0).unflatten(2, query.sizes[-1])


@dataclass
class Decoded:
    """Decoder output for a prompt-free, multimask decode."""

    lowres_multimasks: Tensor  # (b, 3, H/4, W/4)
    ious: Tensor  # (b, 3)
    lowres_best: Tensor  # (b, 1, H/4, W/4)
    object_score_logits: Tensor  # (b, 1)
    logits: Tensor  # (b, H, W)


def decode(sam2: SAM2Base, pix_feat: Tensor, high_res: list[Tensor],
           out_size: tuple[int, int]) -> Decoded:
    """No-prompt multimask decode; the best of 3 by predicted IoU, upsampled to ``out_size``.

    This is ``_forward_sam_heads`` without its object-score gating: 1.1.0 sets every logit
    of a sample to -1024 when its object score is <= 0, which the reference does not do and
    which would stop all gradients. So the prompt encoder and ``sam_mask_decoder`` are
    called directly with the same arguments, and the selection and upsampling are redone.
    The decoder's object pointer is not needed and not computed.
    """
    b = pix_feat.shape[0]
    with torch.no_grad():
        points = (pix_feat.new_zeros(b, 1, 2),
                  -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device))
        sparse, dense = sam2.sam_prompt_encoder(points=points, boxes=None, masks=None)
        image_pe = sam2.sam_prompt_encoder.get_dense_pe()
    masks, ious, _, obj_scores = sam2.sam_mask_decoder(
        image_embeddings=pix_feat, image_pe=image_pe, sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False,
        high_res_features=high_res)
    masks = masks.float()
    best = masks.gather(1, ious.argmax(1)[:, None, None, None].expand(-1, 1, *masks.shape[-2:]))
    logits = F.interpolate(best, size=out_size, mode="bilinear", align_corners=False)
    return Decoded(masks, ious, best, obj_scores, logits[:, 0])
