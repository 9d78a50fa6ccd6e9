"""The app's work as plain functions: the model, supports and their prompts, a run.

The Gradio page (``fssam.app.layout``) only shows what these return. Everything goes
through predict.py's own functions (model settings and loading, SAM 2 support masks,
``segment``), so the app's masks are predict.py's for the same inputs. A support image is
encoded once: its features stay in the loaded model's encoder cache, so changing its
prompt runs only SAM 2's prompt encoder and mask decoder, and a run reuses them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shlex
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from fssam import predict
from fssam.app.uploads import UploadError, read_upload
from fssam.contract import supports_feature_cache
from fssam.data.support_prompts import NEGATIVE, POSITIVE, Prompt, scribble_points
from fssam.data.user_images import InputError, Support
from fssam.engine.feature_cache import FeatureCache, PassMemo
from fssam.prompting import PromptSAM2, prompt_sam2, support_mask, support_mask_name

log = logging.getLogger(__name__)

DEMO_CHECKPOINT = "exp/demo/toy/FSSAM_tiny_dino/split0/1shot/micro/last.pt"
METHODS = ("FSSAM", "HMNet")
RELEASE_EXPERIMENT = {"FSSAM": None, "HMNet": "experiment=pascal_hmnet"}
OBJECT, BACKGROUND, CORNER = "object click", "background click", "box corner"
TOOLS = (OBJECT, BACKGROUND, CORNER)
SCRIBBLE, PAINTED = "scribble (SAM 2 makes the mask)", "mask (used as drawn)"
DRAWINGS = (SCRIBBLE, PAINTED)
MAX_SUPPORTS = 5
MASK_TINT = np.array([40, 120, 255], np.float32)
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ModelSpec:
    """What to load: predict.py's checkpoint, format and model flags."""

    checkpoint: str = DEMO_CHECKPOINT
    checkpoint_format: str = "ours"
    method: str = "FSSAM"  # of a release checkpoint (ours name their method)
    flags: str = ""  # predict.py's model flags, e.g. --sam2-config ... --image-size 512
    device: str = "auto"
    seed: int = 0

    def args(self, shots: int) -> argparse.Namespace:
        """predict.py's arguments for this model and ``shots`` supports."""
        argv = ["--checkpoint", self.checkpoint, "--checkpoint-format", self.checkpoint_format,
                "--device", self.device, "--seed", str(self.seed), "--support-images",
                *["support"] * shots, "--support-points", *["0,0,+"] * shots, "--query", "-",
                *shlex.split(self.flags)]
        experiment = RELEASE_EXPERIMENT.get(self.method)
        if self.checkpoint_format == "release" and experiment and "--override" not in argv:
            argv += ["--override", experiment]
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                return predict.build_parser().parse_args(argv)
        except SystemExit:
            raise InputError(f"model flags {self.flags!r}: "
                             f"{errors.getvalue().strip().splitlines()[-1]}") from None


@dataclass
class LoadedModel:
    """A model ready to segment, its encoder cache and the SAM 2 for prompts (None, with
    ``prompt_error``, for a model without SAM 2 and none given)."""

    spec: ModelSpec
    shots: int
    model: torch.nn.Module
    image_size: int
    device: torch.device
    cache: FeatureCache
    prompter: PromptSAM2 | None
    prompt_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def description(self) -> str:
        kind = type(self.model).__name__
        sam2 = ("its own SAM 2 makes support masks" if self.prompter and self.prompter.own
                else "a given SAM 2 makes support masks" if self.prompter
                else "no SAM 2 for prompts: paint masks")
        return (f"{kind} from {self.spec.checkpoint} ({self.spec.checkpoint_format}), input "
                f"{self.image_size}x{self.image_size}, on {self.device}; {sam2}")


def load_model(spec: ModelSpec, shots: int = 1) -> LoadedModel:
    """Build and load the model as predict.py does (seeded the same way)."""
    args = spec.args(shots)
    device = predict._device(args.device)
    torch.manual_seed(args.seed)
    model, size = predict.load_model(args, device)
    cache = FeatureCache(size_gb=predict.CACHE_GB)
    prompter, error = None, None
    try:
        prompter = prompt_sam2(model, cache, device, sam2_config=args.sam2_config,
                               sam2_checkpoint=predict._weights(args.sam2_checkpoint))
    except InputError as err:
        error = str(err)
    if supports_feature_cache(model):
        cache.begin_pass(model, device, None)
    return LoadedModel(spec, shots, model, size, device, cache, prompter, error)


@dataclass
class SupportState:
    """One support: its image, prompt and the mask SAM 2 (or the brush) made of it."""

    name: str
    image: np.ndarray
    notes: list[str] = field(default_factory=list)
    clicks: list[tuple[float, float, int]] = field(default_factory=list)
    corners: list[tuple[float, float]] = field(default_factory=list)
    drawing: np.ndarray | None = None  # brush pixels (H, W) bool
    drawing_is_mask: bool = False
    mask: np.ndarray | None = None

    @property
    def box(self) -> np.ndarray | None:
        if len(self.corners) < 2:
            return None
        (xa, ya), (xb, yb) = self.corners
        return np.array([min(xa, xb), min(ya, yb), max(xa, xb) + 1, max(ya, yb) + 1])

    def prompt(self) -> Prompt:
        """Clicks, the scribble's clicks and the box, as SAM 2's prompt."""
        points = [(x, y) for x, y, _ in self.clicks]
        labels = [label for _, _, label in self.clicks]
        if self.drawing is not None and not self.drawing_is_mask:
            extra = scribble_points(self.drawing).tolist()
            points, labels = points + extra, labels + [POSITIVE] * len(extra)
        return Prompt(points, labels, self.box)


def new_support(path: str | Path | None) -> SupportState:
    """A support from an uploaded file (``UploadError`` when it cannot be used)."""
    image, notes = read_upload(path)
    return SupportState(Path(path).name, image, notes)


def add_click(state: SupportState, x: float, y: float, tool: str) -> SupportState:
    """A click at pixel (x, y): an object or background point, or a box corner (a third
    corner starts a new box)."""
    height, width = state.image.shape[:2]
    if not (0 <= x < width and 0 <= y < height):
        raise InputError(f"click ({x}, {y}) lies outside {state.name} ({width}x{height})")
    if tool == CORNER:
        state.corners = (state.corners if len(state.corners) < 2 else [])[:1] + [(x, y)]
    elif tool in (OBJECT, BACKGROUND):
        state.clicks.append((float(x), float(y), POSITIVE if tool == OBJECT else NEGATIVE))
    else:
        raise InputError(f"unknown tool {tool!r} (one of {', '.join(TOOLS)})")
    return state


def set_drawing(state: SupportState, layer: np.ndarray | None, kind: str) -> SupportState:
    """The brush layer (H, W, 4) of the editor (its alpha is the drawing) and what it is."""
    drawing = None
    if layer is not None:
        alpha = np.asarray(layer)[..., -1] > 0
        if alpha.shape != state.image.shape[:2]:
            alpha = cv2.resize(alpha.astype(np.uint8), state.image.shape[1::-1],
                               interpolation=cv2.INTER_NEAREST) > 0
        drawing = alpha if alpha.any() else None
    state.drawing, state.drawing_is_mask = drawing, kind == PAINTED
    return state


def clear_prompt(state: SupportState) -> SupportState:
    state.clicks, state.corners, state.drawing, state.mask = [], [], None, None
    return state


def update_mask(loaded: LoadedModel | None, state: SupportState) -> SupportState:
    """The support mask of the current prompt: the painted mask, or SAM 2's."""
    prompt = state.prompt()
    if state.drawing is not None and state.drawing_is_mask:
        state.mask = state.drawing.copy()
    elif prompt.empty:
        state.mask = None
    elif loaded is None:
        raise InputError("load a model first: its SAM 2 makes the support masks")
    elif loaded.prompter is None:
        raise InputError(f"{loaded.prompt_error} (in the app: paint the mask in the Draw tab)")
    else:
        with loaded.lock:
            state.mask = support_mask(loaded.prompter, state.image, prompt, device=loaded.device,
                                      name=state.name)
    return state


@dataclass
class RunResult:
    """What a run made: overlays (RGB, caption), the files to download (query masks, then
    the zip of everything) and the time from the start to the last overlay."""

    overlays: list[tuple[np.ndarray, str]]
    files: list[Path]
    folder: Path
    seconds: float

    @property
    def zip(self) -> Path:
        return self.files[-1]


def _ready_supports(states: Sequence[SupportState | None]) -> list[Support]:
    missing = [str(i) for i, s in enumerate(states, 1) if s is None]
    unmasked = [str(i) for i, s in enumerate(states, 1)
                if s is not None and (s.mask is None or not s.mask.any())]
    if missing or unmasked:
        raise InputError("; ".join(
            ([f"support(s) {', '.join(missing)}: upload an image"] if missing else [])
            + ([f"support(s) {', '.join(unmasked)}: no mask yet (click on the object, draw a "
                f"box, scribble or paint)"] if unmasked else [])))
    return [Support(Path(s.name), s.image, s.mask.astype(np.uint8)) for s in states]


def run(loaded: LoadedModel, states: Sequence[SupportState | None],
        queries: Sequence[str | Path], output: Path, progress: Progress | None = None
        ) -> RunResult:
    """Segment every query with the supports; writes ``<stem>_mask.png`` and
    ``<stem>_overlay.png`` as predict.py does, the support masks
    (``support<i>_<stem>_mask.png``) and a zip of all, in a new folder of ``output``."""
    start = time.perf_counter()
    progress = progress or (lambda fraction, text: None)
    supports = _ready_supports(states)
    if not queries:
        raise InputError("upload one or more query images")
    images, errors = [], []
    for path in queries:
        try:
            images.append(read_upload(path)[0])
        except UploadError as err:
            errors.append(str(err))
    if errors:
        raise UploadError("; ".join(errors))
    stems = predict._output_names([Path(q) for q in queries])
    folder = output / time.strftime("run-%Y%m%d-%H%M%S")
    folder = folder.with_name(f"{folder.name}-{time.perf_counter_ns() % 10**6:06d}")
    folder.mkdir(parents=True)
    overlays, masks = [], []
    with loaded.lock:
        prepared = predict.support_batch(supports, loaded.image_size)
        memo = PassMemo(size_gb=predict.MEMO_GB)
        memo.bind(loaded.model, (str(None), loaded.device.type))
        for index, (rgb, stem) in enumerate(zip(images, stems)):
            progress(index / len(images), f"query {index + 1} of {len(images)}: {stem}")
            pred = predict.segment(loaded.model, prepared, rgb, image_size=loaded.image_size,
                                   device=loaded.device, cache=loaded.cache, memo=memo,
                                   name=stem)
            predict._write_png(folder / f"{stem}_mask.png", pred.astype(np.uint8) * 255)
            picture = predict.overlay(rgb, pred)
            predict._write_png(folder / f"{stem}_overlay.png", picture)
            overlays.append((picture, f"{stem}: {100 * pred.mean():.1f}% object"))
            masks.append(folder / f"{stem}_mask.png")
    seconds = time.perf_counter() - start
    for index, support in enumerate(supports, 1):
        predict._write_png(folder / support_mask_name(index, support.image_path),
                           support.mask * 255)
    archive = folder / "masks.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.glob("*.png")):
            bundle.write(path, path.name)
    progress(1.0, "done")
    log.info("app run: %d quer%s in %.2f s -> %s", len(images), "y" if len(images) == 1 else "ies",
             seconds, folder)
    return RunResult(overlays, [*masks, archive], folder, seconds)
