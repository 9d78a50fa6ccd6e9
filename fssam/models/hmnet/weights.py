"""Strict loaders of the weight files HMNet's release uses (README: HMNet weights).

- ImageNet backbones: ``resnet50_v2.pth`` (deep-stem ResNet-50: ``conv1/bn1/conv2/bn2/conv3/
  bn3``, ``layer1..4``, ``fc``) and torchvision's ``vgg16_bn.pth`` (``features.i``,
  ``classifier``), into a PSPNet (stage 1);
- BAM base learners ``initmodel/PSPNet/<dataset>/split<i>/<backbone>/best.pth``
  (``{epoch, state_dict, optimizer}``), or the ``best.pt`` / ``last.pt`` of this
  framework's base-learner stage (``{model, ...}``), into a PSPNet or into HMNet's frozen
  part;
- released HMNet checkpoints (``{epoch, state_dict, optimizer, optimizer_swin}``, the
  whole model) into HMNet.

Every file is read with ``torch.load(weights_only=True)``; a literal ``module.`` prefix is
stripped (DDP); any missing, unexpected or mis-shaped key raises a KeyError naming the keys
and the file. Keys a file is known to hold but the model does not use (``fc.*``,
``classifier.*``, BAM's duplicate ``encoder.*``) are dropped.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from fssam.models.hmnet.backbones import VGG16_SLICES
from fssam.models.hmnet.pspnet import BACKBONE_MODULES, HEAD_MODULES

log = logging.getLogger(__name__)

DDP_PREFIX = "module."
_RESNET_STEM = {"conv1": "layer0.0", "bn1": "layer0.1", "conv2": "layer0.3",
                "bn2": "layer0.4", "conv3": "layer0.6", "bn3": "layer0.7"}
# first features index of layer0..layer4, then of the unused pool5
_VGG_STARTS = tuple(start for start, _ in VGG16_SLICES) + (VGG16_SLICES[-1][1],)
BACKBONE_PREFIXES = tuple(f"{name}." for name in BACKBONE_MODULES)
FROZEN_PREFIXES = BACKBONE_PREFIXES + tuple(f"{name}." for name in HEAD_MODULES)


def strip_ddp_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove a literal ``module.`` at the start of each key (only that)."""
    return {k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k: v for k, v in state.items()}


def read_state_dict(path: str | Path, what: str) -> dict[str, Tensor]:
    """The state dict of a weight file (``obj["state_dict"]`` of the authors' files,
    ``obj["model"]`` of this framework's checkpoints, else ``obj``), ``module.`` stripped;
    errors name ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{what} {path} cannot be read with torch.load(weights_only=True): "
                         f"{err}") from err
    if isinstance(obj, Mapping):
        state = next((obj[k] for k in ("state_dict", "model") if k in obj), obj)
    else:
        state = obj
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(f"{what} {path} holds no state dict (name -> tensor)")
    return strip_ddp_prefix(state)


def match_state(target: Mapping[str, Tensor], state: Mapping[str, Tensor], *,
                path: str | Path, what: str) -> None:
    """Raise a KeyError naming every key of ``target`` missing from ``state``, every key of
    ``state`` not in ``target`` and every shape mismatch."""
    missing = sorted(target.keys() - state.keys())
    unexpected = sorted(state.keys() - target.keys())
    shapes = sorted(f"{k}: file {tuple(state[k].shape)}, model {tuple(target[k].shape)}"
                    for k in state.keys() & target.keys() if state[k].shape != target[k].shape)
    if missing or unexpected or shapes:
        raise KeyError(f"{what} {path} does not fit the model: missing keys {missing}, "
                       f"unexpected keys {unexpected}, shape mismatches {shapes}")


def _load_subset(model: nn.Module, state: dict[str, Tensor], prefixes: tuple[str, ...] | None,
                 *, path: str | Path, what: str) -> None:
    target = {k: v for k, v in model.state_dict().items()
              if prefixes is None or k.startswith(prefixes)}
    match_state(target, state, path=path, what=what)
    model.load_state_dict(state, strict=prefixes is None)
    log.info("loaded %s %s (%d tensors)", what, path, len(state))


def map_resnet50_imagenet(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``resnet50_v2.pth`` keys -> ``layer0.{0,1,3,4,6,7}`` / ``layer1..4``; ``fc.*`` dropped."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            continue
        out[f"{_RESNET_STEM.get(head, head)}.{rest}"] = value
    return out


def map_vgg16_bn_imagenet(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``vgg16_bn`` keys ``features.j.*`` -> ``layerN.i.*``; ``classifier.*``
    dropped. Keys of other shapes are kept as they are (reported as unexpected)."""
    out = {}
    for key, value in state.items():
        match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        if key.startswith("classifier."):
            continue
        if match is None:
            out[key] = value
            continue
        j = int(match.group(1))
        n = sum(start <= j for start in _VGG_STARTS) - 1
        out[f"layer{n}.{j - _VGG_STARTS[n]}.{match.group(2)}"] = value
    return out


def load_imagenet_backbone(model: nn.Module, path: str | Path, *, backbone: str) -> None:
    """ImageNet weights into ``model.layer0..4`` (a PSPNet), strictly."""
    what = f"ImageNet {backbone} weights"
    state = read_state_dict(path, what)
    mapper = map_resnet50_imagenet if backbone == "resnet50" else map_vgg16_bn_imagenet
    _load_subset(model, mapper(state), BACKBONE_PREFIXES, path=path, what=what)


def map_base_learner(state: Mapping[str, Tensor], *, into_hmnet: bool) -> dict[str, Tensor]:
    """BAM PSPNet keys -> the model's: ``encoder.*`` (duplicates of ``layer*``) dropped,
    ``cls.4.*`` -> ``base_learner.2.*`` when loading into HMNet."""
    out = {}
    for key, value in state.items():
        if key.startswith("encoder."):
            continue
        if into_hmnet and key.startswith("cls.4."):
            key = "base_learner.2." + key[len("cls.4."):]
        out[key] = value
    return out


def load_base_learner(model: nn.Module, path: str | Path) -> None:
    """A base learner (BAM's ``best.pth`` or a checkpoint of our base-learner stage) into a
    PSPNet or into HMNet's frozen part (backbone, PPM, ``cls.0/1`` and ``base_learner.2``),
    strictly."""
    into_hmnet = hasattr(model, "base_learner")
    state = map_base_learner(read_state_dict(path, "base learner"), into_hmnet=into_hmnet)
    prefixes = FROZEN_PREFIXES + (("base_learner.",) if into_hmnet else ())
    _load_subset(model, state, prefixes, path=path, what="base learner")


def load_release_checkpoint(model: nn.Module, path: str | Path) -> None:
    """A released HMNet checkpoint (the whole model, DDP keys) into ``model``, strictly."""
    _load_subset(model, read_state_dict(path, "HMNet checkpoint"), None, path=path,
                 what="HMNet checkpoint")
