"""predict.py: bad inputs stop before any model is built, with errors naming the file."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fssam.data.user_images import InputError, read_mask
from fssam.engine.config import compose_config
from fssam.predict import build_parser, main, model_group


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


def test_black_and_white_mask_has_white_object_and_ignore_elsewhere(tmp_path):
    image = tmp_path / "s.jpg"
    white = _write_mask(tmp_path / "white.png", 40, 60, value=255)
    mask = read_mask(white, image, (40, 60))
    assert mask[10, 10] == 1 and mask[0, 0] == 0 and set(np.unique(mask)) == {0, 1}
    voc_style = np.full((40, 60), 255, np.uint8)  # 0/1 content inside a 255 (ignore) border
    voc_style[1:-1, 1:-1] = 0
    voc_style[5:20, 5:20] = 1
    labelled = tmp_path / "labelled.png"
    cv2.imwrite(str(labelled), voc_style)
    voc = read_mask(labelled, image, (40, 60))
    assert voc[10, 10] == 1 and voc[2, 2] == 0 and voc[0, 0] == 255


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


def _args(*extra: str):
    return build_parser().parse_args(["--checkpoint", "c.pt", "--support-images", "s.jpg",
                                      "t.jpg", "--support-boxes", "0,0,1,1", "0,0,2,2",
                                      "--query", "q.jpg", *extra])


def test_settings_precedence_overrides_over_saved_config():
    args = _args("--override", "model.num_refine=5", "model.dino_checkpoint=null")
    config = OmegaConf.to_container(compose_config("train", ["model.num_refine=2",
                                                             "model.dino_variant=vitl14",
                                                             "sam2.image_size=256"]),
                                    resolve=True, enum_to_str=True)
    group = model_group(args, config)
    assert group["num_refine"] == 5 and group["dino_checkpoint"] is None  # overrides
    assert group["dino_variant"] == "vitl14" and group["image_size"] == 256  # saved config
    assert group["sam2_config"] == "sam2_hiera_s.yaml" and group["legacy_kshot"] is False
    config["model"]["legacy_kshot"] = True
    assert model_group(_args(), config)["legacy_kshot"] is True
    args.override = ["model.legacy_kshot=false", "model.refine_version=v2"]
    group = model_group(args, config)
    assert group["refine_version"] == "v2" and group["legacy_kshot"] is False
    args.override = ["experiment=pascal_hmnet"]
    with pytest.raises(InputError, match="only model.<key>=value overrides"):
        model_group(args, config)


def test_settings_without_a_saved_config_come_from_the_configs():
    group = model_group(_args(), None)
    assert (group["run"]["name"], group["sam2_config"], group["image_size"]) == (
        "FSSAM", "sam2_hiera_s.yaml", 512)
    group = model_group(_args("--override", "experiment=coco_hmnet", "dataset=coco",
                              "model.backbone=vgg"), None)
    assert (group["run"]["name"], group["backbone"], group["shot"], group["image_size"]) == (
        "HMNet", "vgg", 2, 633)  # shot: the number of supports
    assert group["release"]["build_without"] == ["base_learner_checkpoint"]
    with pytest.raises(InputError, match="--override model=hmnet model.sam2_config=x.yaml"):
        model_group(_args("--override", "model=hmnet", "model.sam2_config=x.yaml"), None)
    with pytest.raises(InputError, match="--override model=nothing"):
        model_group(_args("--override", "model=nothing"), None)


def test_cuda_request_without_cuda(files, caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--device", "cuda")
    assert "CUDA is not available" in text and "--device cpu" in text
    text = _bad(files, caplog, "--support-images", str(files["s1"]),
                "--support-masks", str(files["m1"]), "--device", "gpu0")
    assert "--device gpu0: not a device" in text
