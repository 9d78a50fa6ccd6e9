"""HMNet: a frozen PSPNet base learner, a Mamba meta learner and their Gram-matrix ensemble
(README: HMNet). Defaults reproduce the authors' release."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fssam.contract import Features, Memo, encoded, positive_foreground
from fssam.models.hmnet import ensemble as ens
from fssam.models.hmnet.backbones import BACKBONES, backbone_stages, feature_channels
from fssam.models.hmnet.decoder import decode, merge, meta_decoder, reduction
from fssam.models.hmnet.losses import hmnet_losses
from fssam.models.hmnet.mamba import VSSM
from fssam.models.hmnet.priors import prior_maps, summarise_support, support_masks_on_grid
from fssam.models.hmnet.pspnet import (BACKBONE_MODULES, FEATURE_KEYS, HEAD_MODULES, PPM,
                                       PPM_BINS, extract_feats, normalise_images, psp_head, up)
from fssam.models.trainable import load_exactly
from fssam.utils.fingerprint import state_fingerprint

ENCODER = "pspnet"   # the frozen per-image encoder: backbone + PSPNet head conv/BN
ENCODER_MODULES = BACKBONE_MODULES + HEAD_MODULES
FROZEN_MODULES = ENCODER_MODULES + ("base_learner",)
PRIOR_SCALE = 10.0
WINDOW_RATIO = 4
# a model that runs in well under a second on a CPU (tests, demos): same code paths
TINY_SIZES = {"grid": 16, "backbone_width": 8, "head_dim": 16, "reduce_dim": 16,
              "mamba_depth": 2}


def check_grid(grid: int | tuple[int, int]) -> int:
    """The Mamba grid side S: square and divisible by the window ratio 4 (as the release)."""
    if not isinstance(grid, int):
        if len(grid) != 2 or grid[0] != grid[1]:
            raise ValueError(f"HMNet grid {tuple(grid)} must be square")
        grid = int(grid[0])
    if grid <= 0 or grid % WINDOW_RATIO:
        raise ValueError(f"HMNet grid {grid} must be a positive multiple of {WINDOW_RATIO}")
    return grid


class HMNet(nn.Module):
    """Few-shot segmentation with a hybrid Mamba meta learner for ``shot`` supports.

    ``backbone`` "resnet50" | "vgg"; ``num_base_classes`` 15 (PASCAL) | 60 (COCO);
    ``grid`` the Mamba grid side S (64 PASCAL, 80 COCO); ``qim_per_channel_d`` and
    ``kshot_rank_fix`` switch on the corrected behaviour (docs/PROTOCOL.md).
    ``backbone_width`` (64), ``head_dim`` (512), ``reduce_dim`` (256) and ``mamba_depth`` (8)
    shrink the model for tests; the defaults are the release's.
    """

    def __init__(self, *, backbone: str = "resnet50", shot: int = 1, num_base_classes: int = 15,
                 grid: int | tuple[int, int] = 64, qim_per_channel_d: bool = False,
                 kshot_rank_fix: bool = False, backbone_width: int = 64, head_dim: int = 512,
                 reduce_dim: int = 256, mamba_depth: int = 8) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
        if shot < 1:
            raise ValueError(f"HMNet shot must be >= 1, got {shot}")
        self.backbone, self.shot, self.grid = backbone, shot, check_grid(grid)
        self.num_base_classes, self.kshot_rank_fix = num_base_classes, kshot_rank_fix
        for i, stage in enumerate(backbone_stages(backbone, backbone_width)):
            setattr(self, f"layer{i}", stage)
        dims = feature_channels(backbone, backbone_width)
        self.ppm = PPM(in_dim=dims["f3"], reduction_dim=dims["f3"] // len(PPM_BINS))
        head = psp_head(in_dim=2 * dims["f3"], head_dim=head_dim,
                        num_classes=1 + num_base_classes)
        self.cls = nn.Sequential(head[0], head[1])
        self.base_learner = nn.Sequential(nn.ReLU(), nn.Dropout2d(0.1), head[4])
        c = reduce_dim
        self.down_query = reduction(dims["f1"] + dims["f2"], c)
        self.down_supp = reduction(dims["f1"] + dims["f2"], c)
        self.init_merge_query = merge(2 * c + 2, c)
        self.init_merge_supp = merge(2 * c + 1, c)
        self.mamba = VSSM(grid_size=self.grid, dim=c, depth=mamba_depth, d_inner=2 * c,
                          dt_rank=math.ceil(c / 16), ratio=WINDOW_RATIO,
                          qim_per_channel_d=qim_per_channel_d)
        for name, module in meta_decoder(c).items():
            setattr(self, name, module)
        self.gram_merge, self.cls_merge = ens.merge_conv(), ens.merge_conv()
        self.kshot_rw = ens.kshot_reweighter(shot) if shot > 1 else None
        for name in FROZEN_MODULES:
            getattr(self, name).requires_grad_(False)

    # -- parameters and modes ---------------------------------------------------------
    def train(self, mode: bool = True) -> HMNet:
        """As ``nn.Module.train``, but every BatchNorm (all in the frozen part) stays in eval
        mode; the base head's Dropout2d follows ``mode`` (as the release)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """State of the trainable modules only (keys as in ``state_dict()``)."""
        frozen = tuple(f"{name}." for name in FROZEN_MODULES)
        return {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)}

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Strictly load a ``trainable_state_dict()``; names every missing/unexpected key."""
        load_exactly(self, state, self.trainable_state_dict())

    @staticmethod
    def foreground(logits: Tensor) -> Tensor:
        """Foreground of logits at the label size: ``logits > 0`` (section 2.11)."""
        return positive_foreground(logits)

    def loss(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Training loss of a train-mode ``out``: cross entropy of ``final`` plus the Dice of
        ``meta`` against ``batch["query_mask"]`` {0,1,255} (``hmnet_losses``)."""
        return hmnet_losses(out["final"], out["meta"], batch["query_mask"])

    # -- frozen part (the engine's feature-cache protocol) ------------------------------
    @torch.no_grad()
    def extract_features(self, images: Tensor) -> dict[str, Tensor]:
        """Frozen per-image features of RGB 0..255 ``images`` (n,3,H,W): ``f1`` (layer2;
        VGG: resized to layer3's size), ``f2`` (layer3), ``f3`` (layer4), ``f4`` (PSPNet head
        conv + BN), each (n,C,h,w). No gradient; BatchNorms always in eval mode."""
        return extract_feats(self, normalise_images(images), vgg=self.backbone == "vgg")

    def frozen_encoders(self) -> dict[str, str]:
        """``pspnet``: fingerprint of the backbone, PPM and head conv/BN weights."""
        return {ENCODER: state_fingerprint({m: getattr(self, m) for m in ENCODER_MODULES},
                                           {"backbone": self.backbone})}

    def encode_images(self, name: str, images: Tensor) -> dict[str, Tensor]:
        """Frozen encoder ``name`` (only ``pspnet``: ``extract_features``) on images."""
        if name != ENCODER:
            raise KeyError(f"unknown encoder {name!r}; this model has ['{ENCODER}']")
        return self.extract_features(images)

    # -- forward ----------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any], return_intermediates: bool = False, *,
                features: Features | None = None, memo: Memo | None = None
                ) -> dict[str, Any]:
        """``query_img`` (b,3,H,W) and ``support_imgs`` (b,K,3,H,W) RGB 0..255,
        ``support_masks`` (b,K,H,W) {0,1,255}, ``base_class_index`` (b,) (training only).
        ``features``: the ``pspnet`` encoder's outputs for ``episode_images(batch)`` (the b
        queries, then the supports episode by episode), from the engine's feature cache;
        without them the model encodes the images itself. ``memo`` is accepted for the
        engine's protocol and not used (what depends on trainable weights is cheap here).

        Returns ``logits`` (b,H,W) = final[:,1] - final[:,0] (foreground iff > 0), ``final``
        (b,2,H,W), ``priors`` (b,2,S,S) (the prior-FG and prior-corr maps of section 2.6, from
        frozen features only), in training mode ``meta`` (b,2,H,W), and ``intermediates`` on
        request.
        """
        b, k = batch["support_imgs"].shape[:2]
        feats = encoded(self, batch, features, ENCODER)
        query_feats = {key: v[:b] for key, v in feats.items()}
        support_feats = {key: v[b:].unflatten(0, (b, k)) for key, v in feats.items()}
        return self.forward_features(
            query_feats, support_feats, batch["support_masks"],
            out_size=batch["query_img"].shape[-2:],
            base_class_index=batch.get("base_class_index"),
            return_intermediates=return_intermediates)

    def forward_features(self, query_feats: Mapping[str, Tensor],
                         support_feats: Mapping[str, Tensor], support_masks: Tensor, *,
                         out_size: tuple[int, int], base_class_index: Tensor | None = None,
                         return_intermediates: bool = False) -> dict[str, Any]:
        """Everything after the frozen features (see ``forward``)."""
        self._check_inputs(query_feats, support_feats, support_masks, base_class_index)
        inter = self.meta_inputs(query_feats, support_feats, support_masks)
        inter["vssm_out"] = self.mamba(inter["q_merged"], inter["s_merged"])
        inter.update(decode(F.relu(inter["vssm_out"]), {
            name: getattr(self, name) for name in ("ASPP_meta", "res1_meta", "res2_meta",
                                                   "cls_meta")}))
        inter["meta_out"] = inter.pop("meta")
        inter.update(self.ensemble_outputs(query_feats, support_feats, inter["meta_out"],
                                           base_class_index))
        final = up(inter["final_out"], out_size)
        out: dict[str, Any] = {"logits": final[:, 1] - final[:, 0], "final": final,
                               "priors": inter["corr_query_mask"]}
        if self.training:
            out["meta"] = up(inter["meta_out"], out_size)
        if return_intermediates:
            inter.update(query_feats=dict(query_feats), support_feats=dict(support_feats))
            out["intermediates"] = inter
        return out

    def _check_inputs(self, query_feats: Mapping[str, Tensor],
                      support_feats: Mapping[str, Tensor], support_masks: Tensor,
                      base_class_index: Tensor | None) -> None:
        missing = [k for k in FEATURE_KEYS if k not in query_feats or k not in support_feats]
        if missing:
            raise KeyError(f"HMNet features lack {missing} (expected {FEATURE_KEYS})")
        k = support_masks.shape[1]
        if k != self.shot or support_feats["f1"].shape[1] != k:
            raise ValueError(f"HMNet built for {self.shot} shot(s) got {k} support masks and "
                             f"{support_feats['f1'].shape[1]} support feature sets")
        h, w = query_feats["f3"].shape[-2:]
        if h != w:
            raise ValueError(f"HMNet needs square feature maps (square inputs), got {h}x{w}")
        if self.training and base_class_index is None:
            raise ValueError("HMNet in training mode needs batch['base_class_index'] (the "
                             "episode class's 0-based index in the base class list)")
        if base_class_index is not None and not (
                (base_class_index >= 0) & (base_class_index < self.num_base_classes)).all():
            raise ValueError(f"base_class_index {base_class_index.tolist()} outside "
                             f"0..{self.num_base_classes - 1}")

    def meta_inputs(self, query_feats: Mapping[str, Tensor], support_feats: Mapping[str, Tensor],
                    support_masks: Tensor) -> dict[str, Tensor]:
        """Reductions, support summary, priors and merges: the Mamba stack's inputs
        ``q_merged``, ``s_merged`` (b,C,S,S) and their intermediates (fixture names)."""
        b, k, grid = support_masks.shape[0], support_masks.shape[1], self.grid
        q_down = self.down_query(torch.cat([query_feats["f1"], query_feats["f2"]], 1))
        s_down = self.down_supp(torch.cat([support_feats["f1"].flatten(0, 1),
                                           support_feats["f2"].flatten(0, 1)], 1))
        q_mid, s_mid = up(q_down, grid), up(s_down, grid)
        masks = support_masks_on_grid(support_masks, grid)
        summary = summarise_support(s_mid.unflatten(0, (b, k)), masks)
        priors = prior_maps(query_feats, support_feats, masks, grid)
        proto = summary.prototype.expand(-1, -1, grid, grid)
        q_merged = self.init_merge_query(torch.cat([q_mid, proto, PRIOR_SCALE * priors.prior], 1))
        s_merged = self.init_merge_supp(torch.cat([summary.masked_feature, proto, summary.mask],
                                                  1))
        inter = {"q_mid_down": q_down, "q_mid": q_mid, "s_mid_down": s_down, "s_mid": s_mid,
                 "s_mask64": masks, "supp_pro_shots": summary.prototype_shots,
                 "supp_pro": summary.prototype, "supp_mask": summary.mask,
                 "supp_feat": summary.masked_feature, "corr_query_mask": priors.prior,
                 "prior_use_h5_fg": priors.use_f4_fg, "prior_use_h5_fb": priors.use_f4_corr,
                 "prior_fg_sel": priors.fg_shots, "prior_fb_sel": priors.corr_shots,
                 "q_merged": q_merged, "s_merged": s_merged}
        for tag, layer in (("h4", priors.f3), ("h5", priors.f4)):
            inter.update({f"prior_fg_{tag}": layer.fg, f"prior_bg_{tag}": layer.bg,
                          f"prior_fb_{tag}": layer.corr, f"prior_fgmax_{tag}": layer.fg_rawmax,
                          f"prior_fbmax_{tag}": layer.corr_max})
        return inter

    def ensemble_outputs(self, query_feats: Mapping[str, Tensor],
                         support_feats: Mapping[str, Tensor], meta_logits: Tensor,
                         base_class_index: Tensor | None) -> dict[str, Tensor]:
        """Base learner, scene difference and the ensemble (section 2.10) on the grid."""
        base_out = self.base_learner(up(query_feats["f4"], self.grid))
        scene = ens.scene_differences(query_feats["f1"], support_feats["f1"])
        shots = ens.combine_shots(scene["est_shots"], self.kshot_rw,
                                  rank_fix=self.kshot_rank_fix)
        base = ens.base_map(base_out, base_class_index if self.training else None)
        merged = ens.ensemble(meta_logits, base, shots["est"], self.gram_merge, self.cls_merge)
        out = {"base_out": base_out, "gram_q": scene["gram_q"], "gram_s": scene["gram_s"],
               "est_val_shots": scene["est_shots"], "est_val": shots["est"], "base_map": base,
               "final_out": merged.pop("final")}
        out.update(merged)
        if "weights" in shots:
            out.update(kshot_sorted_val=shots["sorted"], kshot_sort_idx=shots["sort_idx"],
                       kshot_inv_idx=shots["rank"], kshot_rw_out=shots["rw_out"],
                       kshot_weight_soft=shots["weights"])
        return out
