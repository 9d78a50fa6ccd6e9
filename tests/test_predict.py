"""predict.py / python -m fssam.predict: inputs, outputs and bad-input errors."""

from __future__ import annotations

import json
import logging
import runpy
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fssam.predict import build_parser, main, resolve_settings

REPO = Path(__file__).resolve().parents[1]


def _write_rgb(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def _write_mask(path: Path, height: int, width: int, value: int = 1,
                box: tuple[int, int, int, int] = (5, 5, 20, 20)) -> Path:
    mask = np.zeros((height, width), np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = value
    cv2.imwrite(str(path), mask)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "s1": _write_rgb(tmp_path / "s1.jpg", 40, 60, 0),
        "m1": _write_mask(tmp_path / "m1.png", 40, 60),
        "s2": _write_rgb(tmp_path / "s2.png", 50, 30, 1),
        "m2": _write_mask(tmp_path / "m2.png", 50, 30),
        "q": _write_rgb(tmp_path / "q.jpg", 33, 47, 2),
        "ckpt": tmp_path / "missing.pt",
        "out": tmp_path / "out",
    }


def _bad(files: dict[str, Path], caplog: pytest.LogCaptureFixture, *args: str) -> str:
    argv = ["--checkpoint", str(files["ckpt"]), "--query", str(files["q"]),
            "--output", str(files["out"]), *args]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    assert not files["out"].exists()
    return caplog.text


def test_unreadable_query_is_named(files, caplog, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--query", str(broken))
    assert f"cannot read image {broken}" in text


def test_unreadable_query_in_folder_is_named(files, caplog, tmp_path):
    folder = tmp_path / "queries"
    folder.mkdir()
    _write_rgb(folder / "a.png", 20, 20, 3)
    (folder / "b.jpg").write_bytes(b"\x00" * 10)
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--query", str(folder))
    assert str(folder / "b.jpg") in text


def test_unreadable_support_image_and_mask(files, caplog, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    text = _bad(files, caplog, "--support-images", str(broken), "--support-masks", str(files["m1"]))
    assert f"cannot read image {broken}" in text
    text = _bad(files, caplog, "--support-images", str(files["s1"]), "--support-masks", str(broken))
    assert f"cannot read mask {broken}" in text
    text = _bad(files, caplog, "--support-images", str(tmp_path / "nope.jpg"),
                "--support-masks", str(files["m1"]))
    assert f"image not found: {tmp_path / 'nope.jpg'}" in text


def test_mask_size_mismatch_names_both_files(files, caplog):
    text = _bad(files, caplog, "--support-images", str(files["s1"]), "--support-masks",
                str(files["m2"]))
    assert f"mask {files['m2']} is 30x50" in text and f"{files['s1']} is 60x40" in text


def test_empty_masks(files, caplog, tmp_path):
    empty = _write_mask(tmp_path / "empty.png", 40, 60, value=0)
    text = _bad(files, caplog, "--support-images", str(files["s1"]), "--support-masks", str(empty))
    assert f"mask {empty} has no foreground pixel" in text
    white = _write_mask(tmp_path / "white.png", 40, 60, value=255)
    text = _bad(files, caplog, "--support-images", str(files["s1"]), "--support-masks", str(white))
    assert f"mask {white} has no foreground pixel" in text and "--mask-white-foreground" in text


@pytest.mark.parametrize("box, message", [
    ("10,10,10,20", "is empty"),
    ("30,5,20,20", "is empty"),
    ("-1,0,10,10", "lies outside"),
    ("0,0,61,40", "lies outside"),
    ("0,0,60,41", "lies outside"),
    ("1,2,3", "expected x1,y1,x2,y2"),
    ("a,b,c,d", "expected x1,y1,x2,y2"),
])
def test_bad_boxes_name_the_image(files, caplog, box, message):
    text = _bad(files, caplog, "--support-images", str(files["s1"]), f"--support-boxes={box}")
    assert message in text and str(files["s1"]) in text


def test_number_of_masks_or_boxes_must_match(files, caplog):
    text = _bad(files, caplog, "--support-images", str(files["s1"]), str(files["s2"]),
                "--support-masks", str(files["m1"]))
    assert "2 support image(s)" in text and str(files["s2"]) in text and "1 mask" in text
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-boxes", "0,0,5,5", "1,1,6,6")
    assert "1 support image(s)" in text and "2 box" in text


def test_missing_query_and_empty_folder(files, caplog, tmp_path):
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--query", str(tmp_path / "nothing"))
    assert f"query not found: {tmp_path / 'nothing'}" in text
    (tmp_path / "empty_dir").mkdir()
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--query", str(tmp_path / "empty_dir"))
    assert "no image" in text and str(tmp_path / "empty_dir") in text


def test_missing_checkpoint_is_named(files, caplog):
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]))
    assert f"checkpoint not found: {files['ckpt']}" in text


# ---- end to end with the micro SAM 2 and a tiny random DINOv2 on synthetic images ----

PARITY = REPO / "tests" / "fixtures" / "parity"
MICRO = {"sam2_config": str(PARITY / "sam2_micro_v1.yaml"),
         "sam2_checkpoint": str(PARITY / "micro_weights.pt"),
         "dino_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2}}  # = fssam_tiny_dino
MICRO_FLAGS = ["--sam2-config", MICRO["sam2_config"], "--sam2-checkpoint",
               MICRO["sam2_checkpoint"], "--image-size", "128", "--dino-input-size", "56",
               "--dino-checkpoint", "none", "--dino-kwargs", json.dumps(MICRO["dino_kwargs"])]


def _micro_config() -> dict:
    """The resolved training config of a micro run, as train.py stores it in checkpoints."""
    from omegaconf import OmegaConf

    from fssam.engine.tester import compose_config

    cfg = compose_config("train", ["sam2=micro", "model=fssam_tiny_dino",
                                   f"sam2.config={MICRO['sam2_config']}",
                                   f"sam2.checkpoint={MICRO['sam2_checkpoint']}"])
    return OmegaConf.to_container(cfg, resolve=True)


def _micro_model(config: dict) -> torch.nn.Module:
    """The model as training and testing build it from the config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from fssam.utils.config import model_kwargs

    torch.manual_seed(0)
    return instantiate(model_kwargs(OmegaConf.create(config["model"]))).eval()


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two supports and a folder of two queries of one class, from the synthetic dataset."""
    from fssam.data.toy import make_toy_pascal

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

    def prepared(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = eval_transform(image.astype(np.float32), mask, 128)
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).long()

    pairs = [prepared(s, m) for s, m in zip(supports, masks)]
    batch = {"query_img": prepared(query, np.zeros(query.shape[:2], np.uint8))[0][None],
             "support_imgs": torch.stack([p[0] for p in pairs])[None],
             "support_masks": torch.stack([p[1] for p in pairs])[None]}
    with torch.no_grad():
        logits = model(batch)["logits"][0]
    return logits_to_prediction(logits, query.shape[:2]).numpy()


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
              str(toy["masks"][0]), "--query", str(toy["queries"]), "--output", str(tmp_path)]
    caplog.set_level(logging.ERROR)
    assert main(["--checkpoint", str(toy["release"]), *common]) == 2
    assert "--checkpoint-format release" in caplog.text and str(toy["release"]) in caplog.text
    caplog.clear()
    missing = tmp_path / "dinov2_vitb14_pretrain.pth"
    flags = [f if f != "none" else str(missing) for f in MICRO_FLAGS]
    assert main(["--checkpoint", str(toy["release"]), "--checkpoint-format", "release",
                 *flags, *common]) == 2
    assert str(missing) in caplog.text and "download_weights.py" in caplog.text
    caplog.clear()
    assert main(["--checkpoint", str(toy["ckpt"]), "--checkpoint-format", "release",
                 *MICRO_FLAGS, *common]) == 2
    assert f"{toy['ckpt']} does not fit the model" in caplog.text
    assert not any(tmp_path.iterdir())


def test_settings_precedence_flags_over_config_over_defaults():
    args = build_parser().parse_args(["--checkpoint", "c.pt", "--support-images", "s.jpg",
                                      "--support-boxes", "0,0,1,1", "--query", "q.jpg",
                                      "--num-refine", "5", "--dino-checkpoint", "none"])
    config = {"model": {"_target_": "fssam.models.build_model", "name": "FSSAM",
                        "num_refine": 2, "dino_variant": "vitl14", "image_size": 256},
              "dataset": {"root": "data/pascal"}}
    settings = resolve_settings(args, config)
    assert settings.num_refine == 5 and settings.dino_checkpoint is None  # flags
    assert settings.dino_variant == "vitl14" and settings.image_size == 256  # saved config
    assert settings.sam2_config == "sam2_hiera_s.yaml" and settings.dino_input_size == 560


def test_cuda_request_without_cuda(files, caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--device", "cuda")
    assert "CUDA is not available" in text and "--device cpu" in text
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--device", "gpu0")
    assert "--device gpu0: not a device" in text
