"""Fixtures of the app's tests: a micro FSSAM checkpoint (fixture SAM 2 weights, tiny
random DINOv2, as the demo's) and two supports and two queries of one synthetic class."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fssam.engine.config import compose_config, model_kwargs, plain
from fssam.tools.toy import make_toy_pascal

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
MICRO = ["sam2=micro", "model=fssam_tiny_dino", f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
         f"sam2.checkpoint={PARITY / 'micro_weights.pt'}"]


def save_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A checkpoint of ours (trainable state and the resolved training config) of the model
    the overrides compose, randomly initialised from seed 0."""
    config = plain(compose_config("train", overrides))
    torch.manual_seed(0)
    model = instantiate(model_kwargs(OmegaConf.create(config["model"])))
    torch.save({"model": model.trainable_state_dict(), "epoch": 1, "config": config}, path)
    return path


@pytest.fixture(scope="session")
def app_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("app")
    meta = make_toy_pascal(root / "toy", num_images=12, seed=2, workers=1)
    voc = root / "toy" / "VOC2012"
    images = {n: c for split in meta["images"].values() for n, c in split.items()}
    cls = max(range(1, 21), key=lambda c: sum(str(c) in v for v in images.values()))
    names = sorted(n for n, v in images.items() if str(cls) in v)[:4]
    truth = [cv2.imread(str(voc / "SegmentationClassAug" / f"{n}.png"), cv2.IMREAD_GRAYSCALE)
             == cls for n in names[:2]]
    return {"supports": [voc / "JPEGImages" / f"{n}.jpg" for n in names[:2]],
            "queries": [voc / "JPEGImages" / f"{n}.jpg" for n in names[2:]], "truth": truth,
            "ckpt": save_checkpoint(root / "fssam.pt", MICRO),
            "hmnet": save_checkpoint(root / "hmnet.pt", ["model=hmnet_tiny", "dataset=toy"]),
            "root": root}


def object_pixels(mask: np.ndarray, count: int) -> list[tuple[int, int]]:
    """``count`` (x, y) pixels of a mask, spread over its raster order."""
    ys, xs = np.nonzero(mask)
    pick = np.linspace(0, len(xs) - 1, count + 2).round().astype(int)[1:-1]
    return [(int(xs[i]), int(ys[i])) for i in pick]
