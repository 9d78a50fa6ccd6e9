"""The FSSAM model: pseudo prompts, memory refinement, calibrated attention on SAM 2."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.core.global_hydra import GlobalHydra

# Importing sam2 initialises Hydra's global state for sam2's own builder, which we do not
# use (configs are read with OmegaConf); left set, it makes a later ``@hydra.main`` fail.
_HYDRA_WAS_INITIALISED = GlobalHydra.instance().is_initialized()
import sam2  # noqa: E402,F401

if not _HYDRA_WAS_INITIALISED:
    GlobalHydra.instance().clear()

from fssam.models.fssam.model import FSSAM  # noqa: E402
from fssam.models.fssam.prior import PseudoPromptGenerator, load_dinov2_state_dict  # noqa: E402
from fssam.models.fssam.sam2_adapter import build_sam2  # noqa: E402

__all__ = ["FSSAM", "build_model", "load_release_checkpoint"]

log = logging.getLogger(__name__)

RELEASE_PREFIXES = {"module.sam2.": "sam2", "module.dino.": "dino"}


def build_model(*, sam2_config: str, sam2_checkpoint: str | None, image_size: int = 512,
                dino_variant: str = "vitb14", dino_checkpoint: str | None,
                dino_input_size: int = 560, dino_kwargs: dict | None = None,
                num_refine: int = 3, refine_version: str = "v1",
                legacy_kshot: bool = False, fp32_calibration: bool = False) -> FSSAM:
    """FSSAM from a SAM 2 config (package name or yaml path) and the two weight files.

    A checkpoint of None gives random weights (with a warning).
    """
    sam2_model = build_sam2(sam2_config, sam2_checkpoint, image_size=image_size)
    prior = PseudoPromptGenerator(variant=dino_variant, checkpoint=dino_checkpoint,
                                  input_size=dino_input_size, model_kwargs=dino_kwargs)
    return FSSAM(sam2=sam2_model, prior_generator=prior, num_refine=num_refine,
                 refine_version=refine_version, legacy_kshot=legacy_kshot,
                 fp32_calibration=fp32_calibration)


def load_release_checkpoint(model: FSSAM, path: str | Path) -> None:
    """Load an authors' FSSAM training checkpoint (``{"state_dict": {"module.sam2.…",
    "module.dino.…"}}``) into ``model``.

    SAM 2 keys load strictly into ``model.sam2``; DINOv2 keys (original format) into the
    prior generator's timm model. Any key that does not map raises a KeyError listing all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"release checkpoint {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    parts: dict[str, dict[str, torch.Tensor]] = {"sam2": {}, "dino": {}}
    unmapped = []
    for key, value in state.items():
        prefix = next((p for p in RELEASE_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            unmapped.append(key)
        else:
            parts[RELEASE_PREFIXES[prefix]][key[len(prefix):]] = value
    expected = model.sam2.state_dict().keys()
    missing = sorted(expected - parts["sam2"].keys())
    unmapped += sorted("module.sam2." + k for k in parts["sam2"].keys() - expected)
    if unmapped or missing:
        raise KeyError(f"release checkpoint {path} does not map onto the model: unmapped "
                       f"keys {sorted(unmapped)}, SAM 2 keys missing {missing}")
    model.sam2.load_state_dict(parts["sam2"], strict=True)
    if parts["dino"]:
        if model.prior is None:
            raise KeyError("release checkpoint has DINOv2 keys but the model has no prior "
                           "generator")
        load_dinov2_state_dict(model.prior.dino, parts["dino"])
    else:
        log.warning("release checkpoint %s has no DINOv2 weights", path)
    log.info("loaded release checkpoint %s", path)
