"""HMNet (Hybrid Mamba for Few-Shot Segmentation, NeurIPS 2024) on the shared engine."""

from __future__ import annotations

import logging
from pathlib import Path

from fssam.models.hmnet.model import HMNet
from fssam.models.hmnet.pspnet import PSPNet
from fssam.models.hmnet.weights import (load_base_learner, load_imagenet_backbone,
                                        load_release_checkpoint)

__all__ = ["HMNet", "PSPNet", "build_model", "build_pspnet", "load_base_learner",
           "load_imagenet_backbone", "load_release_checkpoint"]

log = logging.getLogger(__name__)


def build_model(*, backbone: str = "resnet50", shot: int = 1, num_base_classes: int = 15,
                image_size: int | None = None, grid: int = 64,
                qim_per_channel_d: bool = False, kshot_rank_fix: bool = False,
                base_learner_checkpoint: str | Path | None = None,
                checkpoint: str | Path | None = None, backbone_width: int = 64,
                head_dim: int = 512, reduce_dim: int = 256, mamba_depth: int = 8) -> HMNet:
    """HMNet with its weights.

    ``image_size``: the input side the data are resized to (473 / 633); any side works, the
    meta learner resizes to the grid ``grid``; it must leave the backbone maps at least 2x2.

    ``checkpoint``: a released HMNet checkpoint (the whole model); the base learner file is
    then not read. Else ``base_learner_checkpoint``: the BAM base learner ``best.pth`` for the
    frozen part (meta learner from its initialisation, for meta-training). Neither: random
    weights, with a warning.
    """
    if image_size is not None and image_size < 2 * 16:
        raise ValueError(f"HMNet image_size {image_size} is too small (at least 32: the backbone "
                         f"has stride 16)")
    model = HMNet(backbone=backbone, shot=shot, num_base_classes=num_base_classes, grid=grid,
                  qim_per_channel_d=qim_per_channel_d, kshot_rank_fix=kshot_rank_fix,
                  backbone_width=backbone_width, head_dim=head_dim, reduce_dim=reduce_dim,
                  mamba_depth=mamba_depth)
    if checkpoint is not None:
        if base_learner_checkpoint is not None:
            log.info("HMNet checkpoint %s holds the whole model; base learner %s not read",
                     checkpoint, base_learner_checkpoint)
        load_release_checkpoint(model, checkpoint)
    elif base_learner_checkpoint is not None:
        load_base_learner(model, base_learner_checkpoint)
    else:
        log.warning("HMNet built with random weights (no base learner, no checkpoint)")
    return model


def build_pspnet(*, backbone: str = "resnet50", num_base_classes: int = 15,
                 imagenet_checkpoint: str | Path | None = None, backbone_width: int = 64,
                 head_dim: int = 512) -> PSPNet:
    """The PSPNet base learner (BAM stage 1) with ImageNet backbone weights (None: random
    weights, with a warning); it takes inputs of any size."""
    model = PSPNet(backbone=backbone, num_base_classes=num_base_classes,
                   backbone_width=backbone_width, head_dim=head_dim)
    if imagenet_checkpoint is None:
        log.warning("PSPNet built with a random backbone (no ImageNet weights)")
    else:
        load_imagenet_backbone(model, imagenet_checkpoint, backbone=backbone)
    return model
