"""Segment your own images: K annotated supports, one query image or a folder of them.

Writes ``<stem>_mask.png`` (0/255, the query's original size) and ``<stem>_overlay.png``
per query. Images are resized to the model's input size as in evaluation; the logits are
upsampled to the original size (bilinear, align_corners=True); the foreground is the
method's rule (FSSAM: sigmoid >= 0.5; HMNet: the argmax of its two channels). Supports
given by clicks, a scribble or a box for SAM 2 are masked by SAM 2 first
(``fssam.prompting``); those masks are written as ``support<i>_<stem>_mask.png``. Every
image is encoded alone, once, as evaluation does: the supports' features serve their
prompts and every query.

    python predict.py --checkpoint best.pt --support-images s.jpg --support-masks s.png \\
        --query photos/ --output outputs/predict
"""

from __future__ import annotations

import argparse
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from fssam.contract import episode_image_ids, episode_images, supports_feature_cache
from fssam.data.user_images import (
    InputError,
    Support,
    list_queries,
    load_supports,
    read_image,
    to_model_input,
)
from fssam.data.user_prompts import load_prompts
from fssam.engine.build import build_model
from fssam.engine.checkpoint import load_checkpoint
from fssam.engine.config import compose_config
from fssam.engine.config import model_group as model_group_of
from fssam.engine.evaluate import autocast
from fssam.engine.evaluator import logits_to_prediction
from fssam.engine.feature_cache import BatchFeatures, FeatureCache, PassMemo
from fssam.prompting import content_id, prompt_sam2, prompted_supports

log = logging.getLogger(__name__)

OVERLAY_COLOUR = np.array([255, 40, 40], np.float32)
NO_FILE = "none"  # as a weight file: random initialisation (tests and demos only)
CACHE_GB = 2.0  # encoder outputs kept while predicting (supports stay, queries pass through)
MEMO_GB = 0.5


def _apply_overrides(group: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``model.<key>=value`` overrides of a checkpoint's saved model settings."""
    bad = [o for o in overrides if not o.startswith("model.") or "=" not in o]
    if bad:
        raise InputError(f"--override {' '.join(bad)}: a checkpoint with a saved config takes "
                         f"only model.<key>=value overrides of it")
    merged = OmegaConf.merge({"model": group}, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_container(merged, resolve=True)["model"]


def model_group(args: argparse.Namespace, config: dict | None) -> dict[str, Any]:
    """The model settings (a config's ``model`` group): the checkpoint's saved training
    config with ``--override model.<key>=value``, else fssam/configs/test.yaml composed with
    the ``--override`` Hydra overrides (default: FSSAM with SAM 2-S and DINOv2-B at 512;
    ``shot`` defaults to the number of supports)."""
    overrides = list(args.override or [])
    if config is not None and "model" in config:
        saved = OmegaConf.to_container(model_group_of(config["model"]), resolve=True)
        group = _apply_overrides(saved, overrides)
    else:
        group = _composed(args, overrides)
    _check_prompt_sam2(args, group)
    return group


def _composed(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    if not any(o.startswith("shot=") for o in overrides):
        overrides.append(f"shot={len(args.support_images)}")
    try:
        composed = compose_config("test", overrides)
    except Exception as err:  # Hydra names the override it cannot apply
        raise InputError(f"--override {' '.join(overrides)}: {err}") from err
    return OmegaConf.to_container(composed.model, resolve=True, enum_to_str=True)


def _check_prompt_sam2(args: argparse.Namespace, group: dict[str, Any]) -> None:
    """``--sam2-config``/``--sam2-checkpoint`` name the SAM 2 for the prompts of a model
    without one; a model with SAM 2 takes its own through ``--override``."""
    given = [f"--{n.replace('_', '-')}" for n in ("sam2_config", "sam2_checkpoint")
             if getattr(args, n, None) is not None]
    if given and "sam2_config" in group:
        raise InputError(
            f"{' and '.join(given)} name the SAM 2 that turns prompts into masks for a model "
            f"without one (HMNet); {group['run']['name']} holds its own SAM 2: set it with "
            f"--override sam2=<size> model.sam2_checkpoint=<file>")


def _read_checkpoint(path: Path, fmt: str) -> dict | None:
    """Our checkpoint dict (None for the release format, which the model loader reads)."""
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if fmt == "release":
        return None
    try:
        return load_checkpoint(path, full=False)
    except (KeyError, ValueError) as err:
        raise InputError(f"{err.args[0]}; it is not a checkpoint of ours: for the authors' "
                         f"released checkpoints pass --checkpoint-format release") from err
    except Exception as err:  # torch.load raises several types for a file it cannot read
        raise InputError(f"cannot read checkpoint {path}: {err}") from err


def load_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, int]:
    """Build the model of the resolved settings and load the checkpoint; returns (model, S)
    with S the input side images are resized to."""
    checkpoint = Path(args.checkpoint)
    state = _read_checkpoint(checkpoint, args.checkpoint_format)
    group = model_group(args, None if state is None else state.get("config"))
    log.info("model settings: %s", group)
    weights = "release" if state is None else "ours"
    try:
        model = build_model(group, weights=weights, checkpoint=checkpoint,
                            state=None if state is None else state["model"])
    except InstantiationException as err:  # a missing weight file names itself
        raise err.__cause__ if isinstance(err.__cause__, FileNotFoundError) else InputError(
            f"cannot build model {group['run']['name']}: {err}") from err
    except (pickle.UnpicklingError, EOFError) as err:
        raise InputError(f"cannot read checkpoint {checkpoint}: {err}") from err
    except (KeyError, RuntimeError) as err:
        reason = err.args[0] if err.args else err
        raise InputError(
            f"{checkpoint} does not fit the model {group['run']['name']} built from "
            f"{group.get('sam2_config', group.get('backbone'))}: {reason}. Check the model "
            f"settings (flags, --override: e.g. the SAM 2 size or backbone it was trained "
            f"with) and --checkpoint-format") from err
    return model.to(device).eval(), int(group["run"]["input_size"])


def overlay(rgb: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8 image with the predicted foreground tinted and outlined."""
    out = rgb.astype(np.float32)
    out[pred] = 0.5 * out[pred] + 0.5 * OVERLAY_COLOUR
    out = out.round().astype(np.uint8)
    contours, _ = cv2.findContours(pred.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, min(rgb.shape[:2]) // 300))
    return out


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def _output_names(queries: Sequence[Path]) -> list[str]:
    stems = [q.stem for q in queries]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InputError(f"query images share the name(s) {clashes} (different suffixes); "
                         f"their outputs would overwrite each other, rename them")
    return stems


def support_batch(supports: Sequence[Support], image_size: int) -> dict[str, Any]:
    """The supports as model inputs: ``support_imgs`` [K,3,S,S], ``support_masks`` [K,S,S]
    and their names (``support_ids``, by content)."""
    inputs = [to_model_input(s.image, s.mask, image_size, s.image_path) for s in supports]
    return {"support_imgs": torch.stack([image for image, _ in inputs]),
            "support_masks": torch.stack([mask for _, mask in inputs]),
            "support_ids": [content_id(s.image, image_size) for s in supports]}


def segment(model: torch.nn.Module, supports: dict[str, Any], rgb: np.ndarray, *,
            image_size: int, device: torch.device, amp_dtype: torch.dtype | None = None,
            cache: FeatureCache | None = None, memo: PassMemo | None = None,
            name: str = "query") -> np.ndarray:
    """Boolean prediction (H, W) for the RGB query given ``support_batch``'s supports.

    A model with frozen encoders takes them through ``cache`` (readied with ``begin_pass``)
    and reuses support memories through ``memo``, as evaluation does.
    """
    batch = {"query_img": to_model_input(rgb, None, image_size, name)[0][None].to(device),
             "support_imgs": supports["support_imgs"][None].to(device),
             "support_masks": supports["support_masks"][None].to(device),
             "query_id": [content_id(rgb, image_size)], "support_ids": [supports["support_ids"]]}
    reuse: dict[str, Any] = {}
    if supports_feature_cache(model):
        reuse = {"features": BatchFeatures(model, episode_images(batch),
                                           episode_image_ids(batch), cache),
                 "memo": memo if memo is not None else PassMemo(size_gb=0)}
    with torch.no_grad(), autocast(device, amp_dtype):
        try:
            logits = model(batch, **reuse)["logits"][0].float()
        except ValueError as err:  # e.g. a K-shot HMNet given another number of supports
            raise InputError(f"the model cannot segment with these supports: {err}") from err
    return logits_to_prediction(logits, tuple(rgb.shape[:2]), model.foreground).cpu().numpy()


def predict(model: torch.nn.Module, supports: Sequence[Support], queries: Sequence[Path],
            output: Path, *, image_size: int, device: torch.device,
            amp_dtype: torch.dtype | None = None,
            cache: FeatureCache | None = None) -> list[Path]:
    """Segment each query given the supports; returns the mask files written."""
    prepared = support_batch(supports, image_size)
    cache = cache if cache is not None else FeatureCache(size_gb=CACHE_GB)
    memo = PassMemo(size_gb=MEMO_GB)
    if supports_feature_cache(model):
        cache.begin_pass(model, device, amp_dtype)
        memo.bind(model, (str(amp_dtype), device.type))
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for query, stem in zip(queries, _output_names(queries)):
        rgb = read_image(query)
        pred = segment(model, prepared, rgb, image_size=image_size, device=device,
                       amp_dtype=amp_dtype, cache=cache, memo=memo, name=str(query))
        mask_path = output / f"{stem}_mask.png"
        _write_png(mask_path, pred.astype(np.uint8) * 255)
        _write_png(output / f"{stem}_overlay.png", overlay(rgb, pred))
        log.info("%s: %.1f%% foreground -> %s", query, 100 * pred.mean(), mask_path)
        written.append(mask_path)
    return written


def uses_sam2_prompts(args: argparse.Namespace) -> bool:
    """Whether the supports are prompts SAM 2 turns into masks."""
    return bool(getattr(args, "support_points", None) or getattr(args, "support_scribbles", None)
                or (getattr(args, "support_boxes", None) and args.box_mode == "sam2"))


def _device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine (or this "
                         f"PyTorch has no CUDA); use --device cpu")
    return device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--checkpoint", required=True, help="our last.pt/best.pt or a release file")
    io.add_argument("--checkpoint-format", choices=("ours", "release"), default="ours",
                    help="'release' for the authors' released checkpoints (FSSAM, or HMNet "
                         "with --override experiment=pascal_hmnet ...)")
    io.add_argument("--support-images", nargs="+", required=True, type=Path, metavar="IMAGE")
    which = io.add_mutually_exclusive_group(required=True)
    which.add_argument("--support-masks", nargs="+", type=Path, metavar="PNG",
                       help="one per support: 0 background, 255 ignore, other values object; "
                            "a black-and-white (0/255) mask has 255 as the object")
    which.add_argument("--support-boxes", nargs="+", metavar="X1,Y1,X2,Y2",
                       help="one per support, pixel edges (0,0,W,H = whole image); filled, or "
                            "SAM 2's box prompt with --box-mode sam2")
    which.add_argument("--support-points", nargs="+", metavar="X,Y,+;X,Y,-",
                       help="clicks per support, one argument each: pixel x,y and + (object) "
                            "or - (background), ';' between clicks; SAM 2 makes the mask")
    which.add_argument("--support-scribbles", "--support-scribble", nargs="+", type=Path,
                       metavar="PNG", help="one per support, its size: non-zero pixels (alpha "
                       "when it has one) are a stroke on the object; SAM 2 makes the mask")
    io.add_argument("--box-mode", choices=("fill", "sam2"), default="fill",
                    help="fill: the box is the mask (the benchmarks' box supports); sam2: the "
                         "mask SAM 2 makes of the box")
    io.add_argument("--mask-white-foreground", action="store_true",
                    help="every non-zero mask value is the object (nothing is ignored)")
    io.add_argument("--query", required=True, type=Path, help="an image or a folder of images")
    io.add_argument("--output", type=Path, default=Path("outputs/predict"))
    io.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0, ...")
    io.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
    io.add_argument("--seed", type=int, default=0, help="seeds any randomly initialised part")
    model = parser.add_argument_group(
        "model settings (default: the checkpoint's saved config, else SAM 2-S + DINOv2-B at 512)")
    model.add_argument("--override", nargs="+", metavar="KEY=VALUE",
                       help="Hydra overrides, as train.py and test.py take them: of "
                            "fssam/configs/test.yaml for a checkpoint without a saved config "
                            "(e.g. sam2=large model.legacy_kshot=true, or experiment=coco_hmnet "
                            "dataset=coco model.backbone=vgg), else model.<key>=value of the "
                            "saved one (e.g. model.num_refine=2)")
    model.add_argument("--sam2-config", help="for a model without SAM 2 (HMNet): the sam2 "
                       "package config (or a yaml path) of the SAM 2 that masks prompted supports")
    model.add_argument("--sam2-checkpoint", help="the weights of --sam2-config ('none': random)")
    return parser


def _weights(path: str | None) -> str | None:
    return None if path in (None, NO_FILE) else path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        device = _device(args.device)
        prompts = load_prompts(args.support_images, points=args.support_points,
                               scribbles=args.support_scribbles,
                               boxes=args.support_boxes) if uses_sam2_prompts(args) else None
        supports = None if prompts else load_supports(
            args.support_images, masks=args.support_masks, boxes=args.support_boxes,
            white_is_foreground=args.mask_white_foreground)
        queries = list_queries(args.query)
        _output_names(queries)
        for query in queries:
            read_image(query)  # fail before the model is built
        torch.manual_seed(args.seed)
        model, image_size = load_model(args, device)
        amp = torch.bfloat16 if args.bf16 else None
        cache = FeatureCache(size_gb=CACHE_GB)
        if prompts:
            prompter = prompt_sam2(model, cache, device, amp_dtype=amp,
                                   sam2_config=args.sam2_config,
                                   sam2_checkpoint=_weights(args.sam2_checkpoint))
            supports = prompted_supports(prompter, prompts, args.output, device=device,
                                         amp_dtype=amp)
        written = predict(model, supports, queries, args.output, image_size=image_size,
                          device=device, amp_dtype=amp, cache=cache)
    except (InputError, FileNotFoundError) as err:  # missing weights name their file
        log.error("%s", err)
        return 2
    log.info("wrote %d mask(s) and overlay(s) to %s", len(written), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
