"""predict.py with prompted supports: clicks, a scribble, a box for SAM 2. The support
masks come from the model's own SAM 2 (a given one for HMNet), are written beside the
predictions, and each support image is encoded once for its prompt and every query."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fssam.data.support_prompts import Prompt, scribble_prompt
from fssam.data.user_images import read_image, to_model_input
from fssam.engine.config import compose_config, model_kwargs, plain
from fssam.models.fssam import FSSAM
from fssam.models.fssam import sam2_adapter as sam
from fssam.models.fssam.prompts import prompt_mask
from fssam.predict import main
from fssam.tools.toy import make_toy_pascal

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO / "tests" / "fixtures" / "parity"
MICRO = [f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
         f"sam2.checkpoint={PARITY / 'micro_weights.pt'}"]


def _checkpoint(root: Path, overrides: list[str], name: str) -> tuple[Path, torch.nn.Module]:
    config = plain(compose_config("train", overrides))
    torch.manual_seed(0)
    model = instantiate(model_kwargs(OmegaConf.create(config["model"]))).eval()
    path = root / name
    torch.save({"model": model.trainable_state_dict(), "epoch": 1, "config": config}, path)
    return path, model


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two supports of one class (with their ground truth), two queries, a micro FSSAM
    checkpoint and a tiny 1-shot HMNet one."""
    root = tmp_path_factory.mktemp("toy")
    meta = make_toy_pascal(root, num_images=16, seed=0, workers=1)
    voc = root / "VOC2012"
    images = {n: c for split in meta["images"].values() for n, c in split.items()}
    cls = max(range(1, 21), key=lambda c: sum(str(c) in v for v in images.values()))
    names = sorted(n for n, v in images.items() if str(cls) in v)[:4]
    queries = root / "queries"
    queries.mkdir()
    for name in names[2:]:
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", queries / f"{name}.jpg")
    truth = [cv2.imread(str(voc / "SegmentationClassAug" / f"{n}.png"), cv2.IMREAD_GRAYSCALE)
             == cls for n in names[:2]]
    ckpt, model = _checkpoint(root, ["sam2=micro", "model=fssam_tiny_dino", *MICRO], "best.pt")
    hmnet, _ = _checkpoint(root, ["model=hmnet_tiny", "dataset=toy", "shot=1"], "hmnet.pt")
    return {"supports": [voc / "JPEGImages" / f"{n}.jpg" for n in names[:2]], "truth": truth,
            "queries": queries, "ckpt": ckpt, "model": model, "hmnet": hmnet, "root": root}


def _clicks(mask: np.ndarray, count: int) -> tuple[str, Prompt]:
    """``count`` positive clicks on the mask's pixels, as text and as a Prompt."""
    ys, xs = np.nonzero(mask)
    pick = np.linspace(0, len(xs) - 1, count).round().astype(int)
    points = [(int(xs[i]), int(ys[i])) for i in pick]
    return ";".join(f"{x},{y},+" for x, y in points), Prompt(points, [1] * count)


def _sam2_mask(model: torch.nn.Module, image: Path, prompt: Prompt) -> np.ndarray:
    """The mask the model's SAM 2 makes of the prompt on the image (encoded alone)."""
    rgb = read_image(image)
    model_input, _ = to_model_input(rgb, None, model.sam2.image_size, image)
    feats = sam.image_features(model.sam2, model_input[None])
    return prompt_mask(model.sam2, feats, prompt, rgb.shape[:2])


def _written(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and set(np.unique(image)) <= {0, 255}, path
    return image == 255


def test_clicks_make_support_masks_that_give_the_same_prediction(toy, tmp_path, monkeypatch):
    texts, prompts = zip(*(_clicks(t, 2) for t in toy["truth"]))
    calls = []
    encode = FSSAM.encode_images
    monkeypatch.setattr(FSSAM, "encode_images", lambda self, name, images: calls.append(
        (name, len(images))) or encode(self, name, images))
    out = tmp_path / "clicks"
    assert main(["--checkpoint", str(toy["ckpt"]), "--support-images",
                 *map(str, toy["supports"]), "--support-points", *texts, "--query",
                 str(toy["queries"]), "--output", str(out), "--device", "cpu"]) == 0
    # 2 supports (for their prompts, then reused) + 2 queries, each encoded alone, once
    assert sorted(calls) == [("dinov2", 1)] * 4 + [("sam2", 1)] * 4
    masks = []
    for index, (image, prompt) in enumerate(zip(toy["supports"], prompts), 1):
        mask = _written(out / f"support{index}_{image.stem}_mask.png")
        np.testing.assert_array_equal(mask, _sam2_mask(toy["model"], image, prompt))
        assert 0 < mask.mean() < 1
        masks.append(out / f"support{index}_{image.stem}_mask.png")
    # the written masks, given back as masks, give the same predictions
    again = tmp_path / "masks"
    assert main(["--checkpoint", str(toy["ckpt"]), "--support-images",
                 *map(str, toy["supports"]), "--support-masks", *map(str, masks), "--query",
                 str(toy["queries"]), "--output", str(again), "--device", "cpu"]) == 0
    for query in toy["queries"].iterdir():
        np.testing.assert_array_equal(_written(out / f"{query.stem}_mask.png"),
                                      _written(again / f"{query.stem}_mask.png"))


def test_scribble_and_box_for_sam2(toy, tmp_path):
    image, truth = toy["supports"][0], toy["truth"][0]
    ys, xs = np.nonzero(truth)
    scribble = np.zeros((*truth.shape, 4), np.uint8)  # a stroke on a transparent layer
    cv2.line(scribble, (int(xs.min()), int(ys.mean())), (int(xs.max()), int(ys.mean())),
             (255, 0, 0, 255), 3)
    scribble[..., 3] *= truth  # on the object only
    path = tmp_path / "scribble.png"
    cv2.imwrite(str(path), scribble)
    query = str(next(toy["queries"].iterdir()))
    common = ["--checkpoint", str(toy["ckpt"]), "--support-images", str(image), "--query",
              query, "--device", "cpu"]
    assert main([*common, "--support-scribble", str(path), "--output", str(tmp_path / "s")]) == 0
    expected = _sam2_mask(toy["model"], image, scribble_prompt(scribble[..., 3] > 0))
    np.testing.assert_array_equal(_written(tmp_path / "s" / f"support1_{image.stem}_mask.png"),
                                  expected)
    box = f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"
    assert main([*common, "--support-boxes", box, "--box-mode", "sam2", "--output",
                 str(tmp_path / "b")]) == 0
    expected = _sam2_mask(toy["model"], image, Prompt(box=[float(v) for v in box.split(",")]))
    np.testing.assert_array_equal(_written(tmp_path / "b" / f"support1_{image.stem}_mask.png"),
                                  expected)
    assert main([*common, "--support-boxes", box, "--output", str(tmp_path / "f")]) == 0
    assert not list((tmp_path / "f").glob("support*"))  # a filled box: no SAM 2 mask


def test_hmnet_needs_a_sam2_for_prompts(toy, tmp_path, caplog):
    image = toy["supports"][0]
    text, prompt = _clicks(toy["truth"][0], 3)
    common = ["--checkpoint", str(toy["hmnet"]), "--support-images", str(image),
              "--support-points", text, "--query", str(next(toy["queries"].iterdir())),
              "--device", "cpu", "--output", str(tmp_path / "out")]
    with caplog.at_level(logging.ERROR):
        assert main(common) == 2
    assert "holds no SAM 2" in caplog.text and "--sam2-config" in caplog.text
    assert main([*common, "--sam2-config", str(PARITY / "sam2_micro_v1.yaml"),
                 "--sam2-checkpoint", str(PARITY / "micro_weights.pt")]) == 0
    # a SAM 2 of its own, at its config's input size (128 for the micro one)
    micro = sam.build_sam2(str(PARITY / "sam2_micro_v1.yaml"), str(PARITY / "micro_weights.pt"),
                           image_size=None)
    model_input, _ = to_model_input(read_image(image), None, 128, image)
    expected = prompt_mask(micro, sam.image_features(micro, model_input[None]), prompt,
                           toy["truth"][0].shape)
    np.testing.assert_array_equal(
        _written(tmp_path / "out" / f"support1_{image.stem}_mask.png"), expected)


@pytest.mark.parametrize("flag, value, message", [
    ("--support-points", "10,10", "expected x,y,+ or x,y,-"),
    ("--support-points", "10,10,+;a,b,-", "got 'a,b,-'"),
    ("--support-points", "10,10,?", "expected x,y,+ or x,y,-"),
    ("--support-points", "100000,5,+", "lies outside"),
    ("--support-scribbles", "wrong_size.png", "scribble"),
    ("--support-scribbles", "blank.png", "has no stroke"),
    ("--support-scribbles", "not_an_image.png", "cannot read scribble"),
])
def test_bad_prompts_stop_before_the_model(toy, tmp_path, caplog, flag, value, message):
    cv2.imwrite(str(tmp_path / "wrong_size.png"), np.full((5, 7), 255, np.uint8))
    height, width = toy["truth"][0].shape
    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((height, width), np.uint8))
    (tmp_path / "not_an_image.png").write_bytes(b"nothing")
    value = str(tmp_path / value) if flag == "--support-scribbles" else value
    image = str(toy["supports"][0])
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--support-images", image,
                     flag, value, "--query", image, "--output", str(tmp_path / "out")]) == 2
    assert message in caplog.text and (image in caplog.text or value in caplog.text)
    assert not (tmp_path / "out").exists()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--support-images", image,
                     image, "--support-points", "1,1,+", "--query", image]) == 2
    assert "2 support image(s)" in caplog.text and "1 clicks argument(s)" in caplog.text
