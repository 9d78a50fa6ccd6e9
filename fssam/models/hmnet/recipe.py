"""HMNet's optimisers: the meta-training recipe (README: Training HMNet) and the
base learner's (BAM stage 1, section 4.3).

Meta-training: two optimisers, both stepped every iteration:

- SGD (momentum 0.9, weight decay 1e-4 on all its parameters) over the meta learner's
  convolutions and the ensemble: ``lr = lr_multiplier * sgd_lr * (1 - it / max_it) ** 0.9``
  with ``it`` the 1-based iteration, set before the step. The release puts every group in
  its "10x" class, so the effective initial rate is 0.05 although its config and the
  paper say 5e-3.
- AdamW over every parameter whose name contains ``mamba``, at a constant rate of
  ``adamw_lr * (batch // 2)`` with ``batch`` the per-process batch (the release's
  ``6e-5 * ratio``: 6e-5 at its 2 per GPU, 2.4e-4 at 8 on one GPU), at least ``adamw_lr``
  (the release's integer ratio gives a rate of 0 at batch 1, which would freeze the Mamba
  stack); weight decay 0.01 except for names containing ``norm`` (only ``out_norm`` and the
  final ``mamba.norm``): the block LayerNorms ``ln_1`` / ``ln_2``, ``A_logs``, ``Ds`` and
  the biases are decayed, as in the release.

Base learner: one SGD (momentum 0.9, weight decay 1e-4 on everything) with three groups,
the backbone ``layer0..4``, ``ppm`` and ``cls``; ``lr = group_lr * (1 - it / max_it) ** 0.9``
with ``it`` 1-based, set before the step, no warm-up. BAM's rates: PASCAL backbone 2.5e-4,
PPM and classifier 2.5e-3; COCO 2.5e-3 for all three.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fssam.contract import ScheduledOptimizer, constant_factor, poly_factor
from fssam.models.hmnet.pspnet import BACKBONE_MODULES

SGD_MODULES = ("down_query", "down_supp", "init_merge_query", "init_merge_supp", "ASPP_meta",
               "res1_meta", "res2_meta", "cls_meta", "gram_merge", "cls_merge", "kshot_rw")
MAMBA_KEY = "mamba"
NO_DECAY_KEY = "norm"


def _sgd_parameters(model: nn.Module) -> list[nn.Parameter]:
    modules = [getattr(model, name, None) for name in SGD_MODULES]  # kshot_rw: None at 1 shot
    return [p for module in modules if module is not None
            for p in module.parameters() if p.requires_grad]


def _mamba_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if MAMBA_KEY in name and param.requires_grad:
            (no_decay if NO_DECAY_KEY in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def hmnet_optimizers(model: nn.Module, *, sgd_lr: float = 0.005, lr_multiplier: float = 10.0,
                     momentum: float = 0.9, sgd_weight_decay: float = 1e-4,
                     adamw_lr: float = 6e-5, adamw_betas: Sequence[float] = (0.9, 0.999),
                     adamw_eps: float = 1e-8, adamw_weight_decay: float = 0.01,
                     power: float = 0.9, batch_size: int = 2) -> list[ScheduledOptimizer]:
    """The SGD (poly, 1-based) and AdamW (constant, scaled by ``batch_size // 2``)
    optimisers of ``model``; ``batch_size`` is the per-process batch.

    Every trainable parameter must belong to exactly one of them.
    """
    sgd_params = _sgd_parameters(model)
    mamba_groups = _mamba_groups(model, adamw_weight_decay)
    covered = {id(p) for p in sgd_params} | {id(p) for g in mamba_groups for p in g["params"]}
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if stray:
        raise ValueError(f"trainable parameters in no HMNet optimiser: {stray}")
    sgd = torch.optim.SGD(sgd_params, lr=lr_multiplier * sgd_lr, momentum=momentum,
                          weight_decay=sgd_weight_decay)
    adamw = torch.optim.AdamW(mamba_groups, lr=adamw_lr * max(1, batch_size // 2),
                              betas=tuple(adamw_betas),
                              eps=adamw_eps)
    return [ScheduledOptimizer("sgd", sgd, poly_factor(power, one_based=True)),
            ScheduledOptimizer("adamw", adamw, constant_factor)]


def pspnet_optimizers(model: nn.Module, *, backbone_lr: float = 2.5e-4, head_lr: float = 2.5e-3,
                      momentum: float = 0.9, weight_decay: float = 1e-4, power: float = 0.9,
                      batch_size: int | None = None) -> list[ScheduledOptimizer]:
    """The base learner's SGD: groups backbone (``backbone_lr``), ``ppm`` and ``cls``
    (``head_lr``), poly decay on the 1-based iteration. Every parameter must be in a group.
    ``batch_size`` (per process) does not change the rates."""
    groups = [{"params": [p for name in BACKBONE_MODULES
                          for p in getattr(model, name).parameters()], "lr": backbone_lr},
              {"params": list(model.ppm.parameters()), "lr": head_lr},
              {"params": list(model.cls.parameters()), "lr": head_lr}]
    covered = {id(p) for g in groups for p in g["params"]}
    stray = [n for n, p in model.named_parameters() if id(p) not in covered]
    if stray:
        raise ValueError(f"parameters in no base-learner group: {stray}")
    sgd = torch.optim.SGD(groups, lr=head_lr, momentum=momentum, weight_decay=weight_decay)
    return [ScheduledOptimizer("sgd", sgd, poly_factor(power, one_based=True))]
