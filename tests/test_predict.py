"""predict.py / python -m fssam.predict end to end: micro SAM 2 and a tiny random DINOv2
on synthetic images; the written masks equal what evaluation computes."""

from __future__ import annotations

import logging
import runpy
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fssam.predict import main

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO / "tests" / "fixtures" / "parity"
MICRO = {"sam2_config": str(PARITY / "sam2_micro_v1.yaml"),
         "sam2_checkpoint": str(PARITY / "micro_weights.pt"),
         "dino_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2}}  # = fssam_tiny_dino
# the model settings of an authors' file (no saved config): Hydra overrides
MICRO_FLAGS = ["--override", "sam2=micro", "model=fssam_tiny_dino",
               f"sam2.config={MICRO['sam2_config']}", f"sam2.checkpoint={MICRO['sam2_checkpoint']}",
               "sam2.image_size=128"]


def _micro_config() -> dict:
    """The resolved training config of a micro run, as train.py stores it in checkpoints."""
    from omegaconf import OmegaConf

    from fssam.engine.config import compose_config

    cfg = compose_config("train", ["sam2=micro", "model=fssam_tiny_dino",
                                   f"sam2.config={MICRO['sam2_config']}",
                                   f"sam2.checkpoint={MICRO['sam2_checkpoint']}"])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _micro_model(config: dict) -> torch.nn.Module:
    """The model as training and testing build it from the config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from fssam.engine.config import model_kwargs

    torch.manual_seed(0)
    return instantiate(model_kwargs(OmegaConf.create(config["model"]))).eval()


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two supports and a folder of two queries of one class, from the synthetic dataset."""
    from fssam.tools.toy import make_toy_pascal

    root = tmp_path_factory.mktemp("toy")
    meta = make_toy_pascal(root, num_images=16, seed=0, workers=1)
    voc = root / "VOC2012"
    images = {n: c for split in meta["images"].values() for n, c in split.items()}
    cls = max(range(1, 21), key=lambda c: sum(str(c) in v for v in images.values()))
    names = sorted(n for n, v in images.items() if str(cls) in v)[:4]
    queries = root / "queries"
    queries.mkdir()
    masks = []
    for name in names[:2]:
        label = cv2.imread(str(voc / "SegmentationClassAug" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        mask = np.where(label == 255, 255, (label == cls).astype(np.uint8))
        cv2.imwrite(str(root / f"{name}_mask.png"), mask.astype(np.uint8))
        masks.append(root / f"{name}_mask.png")
    for name in names[2:]:
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", queries / f"{name}.jpg")
    config = _micro_config()
    model = _micro_model(config)
    with torch.no_grad():  # trained-looking weights: perturb what training would change
        for p in model.param_groups()[0]["params"]:
            p.add_(0.05 * torch.randn_like(p))
    ckpt = root / "best.pt"
    torch.save({"model": model.trainable_state_dict(), "epoch": 3, "config": config}, ckpt)
    release = root / "release.pth"
    torch.save({"state_dict": {f"module.sam2.{k}": v
                               for k, v in model.sam2.state_dict().items()}}, release)
    return {"supports": [voc / "JPEGImages" / f"{n}.jpg" for n in names[:2]], "masks": masks,
            "queries": queries, "ckpt": ckpt, "release": release, "model": model}


def _reference(model: torch.nn.Module, supports: list[np.ndarray], masks: list[np.ndarray],
               query: np.ndarray) -> np.ndarray:
    """What evaluation computes: float images through eval_transform, logits_to_prediction."""
    from fssam.data.transforms import eval_transform
    from fssam.engine.evaluator import logits_to_prediction
    from fssam.contract import sigmoid_foreground

    def prepared(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = eval_transform(image.astype(np.float32), mask, 128)
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).long()

    pairs = [prepared(s, m) for s, m in zip(supports, masks)]
    batch = {"query_img": prepared(query, np.zeros(query.shape[:2], np.uint8))[0][None],
             "support_imgs": torch.stack([p[0] for p in pairs])[None],
             "support_masks": torch.stack([p[1] for p in pairs])[None]}
    with torch.no_grad():  # every image encoded alone, one support memory at a time
        logits = model(batch, **evaluation_reuse(model, batch))["logits"][0]
    return logits_to_prediction(logits, query.shape[:2], sigmoid_foreground).numpy()


def evaluation_reuse(model: torch.nn.Module, batch: dict) -> dict:
    """What evaluation gives a model with frozen encoders: images encoded one by one."""
    from fssam.contract import episode_images
    from fssam.engine.feature_cache import BatchFeatures, PassMemo

    images = episode_images(batch)
    return {"features": BatchFeatures(model, images, [None] * len(images), None),
            "memo": PassMemo(size_gb=0)}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_masks_from_checkpoint_config_for_a_folder(toy, tmp_path):
    out = tmp_path / "out"
    argv = ["--checkpoint", str(toy["ckpt"]), "--support-images", *map(str, toy["supports"]),
            "--support-masks", *map(str, toy["masks"]), "--query", str(toy["queries"]),
            "--output", str(out), "--device", "cpu"]
    assert main(argv) == 0
    supports = [_rgb(p) for p in toy["supports"]]
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in toy["masks"]]
    queries = sorted(toy["queries"].iterdir())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{q.stem}_{kind}.png" for q in queries for kind in ("mask", "overlay"))
    sizes = set()
    for query in queries:
        rgb = _rgb(query)
        written = cv2.imread(str(out / f"{query.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert written.shape == rgb.shape[:2] and set(np.unique(written)) <= {0, 255}
        expected = _reference(toy["model"], supports, masks, rgb)
        assert 0 < expected.mean() < 1  # the comparison means something
        np.testing.assert_array_equal(written == 255, expected)
        overlay = cv2.imread(str(out / f"{query.stem}_overlay.png"))
        assert overlay.shape == rgb.shape
        sizes.add(rgb.shape[:2])
    assert len(sizes) > 1  # queries of different sizes


def test_boxes_and_release_checkpoint(toy, tmp_path):
    query = sorted(toy["queries"].iterdir())[0]
    supports = [_rgb(p) for p in toy["supports"]]
    boxes, box_masks = [], []
    for mask_path in toy["masks"]:
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        ys, xs = np.nonzero(mask == 1)
        boxes.append(f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
        filled = np.zeros_like(mask)
        filled[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 1
        box_masks.append(filled)
    common = ["--support-images", *map(str, toy["supports"]), "--support-boxes", *boxes,
              "--query", str(query)]
    assert main(["--checkpoint", str(toy["ckpt"]), "--output", str(tmp_path / "a"),
                 *common]) == 0
    assert main(["--checkpoint", str(toy["release"]), "--checkpoint-format", "release",
                 "--output", str(tmp_path / "b"), *MICRO_FLAGS, *common]) == 0
    ours = cv2.imread(str(tmp_path / "a" / f"{query.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    release = cv2.imread(str(tmp_path / "b" / f"{query.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    expected = _reference(toy["model"], supports, box_masks, _rgb(query))
    np.testing.assert_array_equal(ours == 255, expected)
    np.testing.assert_array_equal(release, ours)
    from_masks = _reference(toy["model"], supports,
                            [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in toy["masks"]],
                            _rgb(query))
    assert (from_masks != expected).any()  # boxes really reached the model


@pytest.mark.filterwarnings("ignore:'fssam.predict' found in sys.modules:RuntimeWarning")
def test_entry_points(toy, tmp_path, monkeypatch):
    query = sorted(toy["queries"].iterdir())[0]
    argv = ["--checkpoint", str(toy["ckpt"]), "--support-images", str(toy["supports"][0]),
            "--query", str(query), "--output", str(tmp_path)]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["predict.py", *argv, "--support-masks", str(toy["masks"][0])])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO / "predict.py"), run_name="__main__")
    assert done.value.code == 0 and (tmp_path / f"{query.stem}_mask.png").exists()
    monkeypatch.setattr(sys, "argv", ["fssam.predict", *argv, "--support-masks",
                                      str(toy["masks"][1])])  # the other support's mask
    with pytest.raises(SystemExit) as done:
        runpy.run_module("fssam.predict", run_name="__main__", alter_sys=True)
    assert done.value.code == 2


def test_checkpoint_errors(toy, tmp_path, caplog):
    common = ["--support-images", str(toy["supports"][0]), "--support-masks",
              str(toy["masks"][0]), "--query", str(toy["queries"]),
              "--output", str(tmp_path / "out")]
    caplog.set_level(logging.ERROR)
    assert main(["--checkpoint", str(toy["release"]), *common]) == 2
    assert "--checkpoint-format release" in caplog.text and str(toy["release"]) in caplog.text
    caplog.clear()
    missing = tmp_path / "dinov2_vitb14_pretrain.pth"
    flags = [*MICRO_FLAGS, f"model.dino_checkpoint={missing}"]
    assert main(["--checkpoint", str(toy["release"]), "--checkpoint-format", "release",
                 *flags, *common]) == 2
    assert str(missing) in caplog.text and "download_weights.py" in caplog.text
    caplog.clear()
    assert main(["--checkpoint", str(toy["ckpt"]), "--checkpoint-format", "release",
                 *MICRO_FLAGS, *common]) == 2
    assert f"{toy['ckpt']} does not fit the model" in caplog.text
    caplog.clear()
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    for fmt in ("ours", "release"):
        assert main(["--checkpoint", str(broken), "--checkpoint-format", fmt, *MICRO_FLAGS,
                     *common]) == 2
        assert f"cannot read checkpoint {broken}" in caplog.text
    assert not (tmp_path / "out").exists()
