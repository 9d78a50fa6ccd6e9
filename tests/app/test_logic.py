"""The app's plain functions without a browser: uploads, prompts, support masks made once
per image's features, a run whose masks are predict.py's."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from fssam.app import logic, views
from fssam.app.uploads import UploadError, read_upload
from fssam.data.support_prompts import Prompt, scribble_points
from fssam.data.user_images import InputError, read_image
from fssam.predict import main as predict_main
from fssam.prompting import support_mask

from .conftest import object_pixels

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def loaded(app_files):
    return logic.load_model(logic.ModelSpec(str(app_files["ckpt"]), device="cpu"))


def test_uploads_read_as_predict_reads_them_with_notes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    grey, deep = rgb[..., 0], rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "deep.png"), deep[..., 0])
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), deep)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.dstack([rgb, grey])).save(tmp_path / "alpha.png")
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    expected = {"grey.png": "greyscale", "deep.png": "16 bits", "deep_rgb.png": "16 bits",
                "cmyk.jpg": "CMYK", "alpha.png": "transparency dropped", "plain.png": None}
    for name, note in expected.items():
        image, notes = read_upload(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (30, 40, 3), name
        np.testing.assert_array_equal(image, read_image(tmp_path / name))
        assert (notes == []) if note is None else (note in notes[0] and name in notes[0])
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UploadError, match="text.png is not an image this app can read"):
        read_upload(tmp_path / "text.png")
    with pytest.raises(UploadError, match=r"plain.png is 40x30 \(0 megapixels\): the app takes "
                                          r"at most 0.001"):
        read_upload(tmp_path / "plain.png", max_megapixels=0.001)
    with pytest.raises(UploadError, match="no file"):
        read_upload(None)


def test_clicks_make_the_mask_once_per_image_features(loaded, app_files, monkeypatch):
    calls = []
    encode = loaded.model.encode_images
    monkeypatch.setattr(loaded.model, "encode_images",
                        lambda name, images: calls.append(name) or encode(name, images))
    state = logic.new_support(app_files["supports"][0])
    (x1, y1), (x2, y2) = object_pixels(app_files["truth"][0], 2)
    for x, y in ((x1, y1), (x2, y2)):
        logic.update_mask(loaded, logic.add_click(state, x, y, logic.OBJECT))
    logic.update_mask(loaded, logic.add_click(state, 0, 0, logic.BACKGROUND))
    assert calls == ["sam2"]  # three prompts, one encoding
    expected = support_mask(loaded.prompter, state.image,
                            Prompt([[x1, y1], [x2, y2], [0, 0]], [1, 1, 0]),
                            device=loaded.device)
    np.testing.assert_array_equal(state.mask, expected)
    assert views.clicks_text(state) == f"{x1},{y1},+;{x2},{y2},+;0,0,-"
    assert f"`{views.clicks_text(state)}`" in views.describe(state)
    assert views.preview(state).shape == state.image.shape
    with pytest.raises(InputError, match="lies outside"):
        logic.add_click(state, 10_000, 0, logic.OBJECT)


def test_box_corners_scribbles_and_painted_masks(loaded, app_files):
    state = logic.new_support(app_files["supports"][0])
    logic.add_click(state, 40, 10, logic.CORNER)
    assert state.box is None and "opposite corner" in views.describe(state)
    logic.add_click(state, 5, 30, logic.CORNER)
    assert state.box.tolist() == [5, 10, 41, 31]  # pixels 5..40 x 10..30 inside
    logic.add_click(state, 7, 8, logic.CORNER)  # a third corner starts a new box
    assert state.corners == [(7, 8)] and state.box is None
    logic.clear_prompt(state)
    layer = np.zeros((*state.image.shape[:2], 4), np.uint8)
    layer[20:24, 10:60, 3] = 255
    logic.update_mask(loaded, logic.set_drawing(state, layer, logic.SCRIBBLE))
    prompt = state.prompt()
    np.testing.assert_array_equal(prompt.points, scribble_points(layer[..., 3] > 0))
    assert state.mask is not None
    logic.update_mask(loaded, logic.set_drawing(state, layer, logic.PAINTED))
    np.testing.assert_array_equal(state.mask, layer[..., 3] > 0)  # used as drawn


def test_a_run_gives_predict_pys_masks(loaded, app_files, tmp_path, monkeypatch):
    states = []
    for image, truth in zip(app_files["supports"], app_files["truth"]):
        state = logic.new_support(image)
        for x, y in object_pixels(truth, 2):
            logic.add_click(state, x, y, logic.OBJECT)
        states.append(logic.update_mask(loaded, state))
    calls, steps = [], []
    encode = loaded.model.encode_images
    monkeypatch.setattr(loaded.model, "encode_images",
                        lambda name, images: calls.append(name) or encode(name, images))
    result = logic.run(loaded, states, app_files["queries"], tmp_path / "app",
                       lambda fraction, text: steps.append(fraction))
    # supports' SAM 2 features were cached by their prompts: only DINOv2 runs on them
    assert sorted(calls) == ["dinov2"] * 4 + ["sam2"] * 2 and steps[-1] == 1.0
    again = logic.run(loaded, states, app_files["queries"][:1], tmp_path / "app")
    assert len(calls) == 6 and len(again.overlays) == 1  # a second run encodes nothing
    stems = [q.stem for q in app_files["queries"]]
    assert [p.name for p in result.files] == [f"{s}_mask.png" for s in stems] + ["masks.zip"]
    with zipfile.ZipFile(result.zip) as bundle:
        assert len(bundle.namelist()) == 2 * len(stems) + 2  # masks, overlays, supports
    out = tmp_path / "predict"
    assert predict_main(["--checkpoint", str(app_files["ckpt"]), "--device", "cpu",
                         "--support-images", *map(str, app_files["supports"]),
                         "--support-points", *[views.clicks_text(s) for s in states],
                         "--query", *map(str, app_files["queries"][:1]), "--output",
                         str(out)]) == 0
    for name in (f"{stems[0]}_mask.png", f"support1_{app_files['supports'][0].stem}_mask.png"):
        np.testing.assert_array_equal(cv2.imread(str(result.folder / name)),
                                      cv2.imread(str(out / name)))


def test_what_cannot_run_says_why(loaded, app_files, tmp_path):
    state = logic.new_support(app_files["supports"][0])
    with pytest.raises(InputError, match=r"support\(s\) 2: upload an image; support\(s\) 1: no "
                                         r"mask yet"):
        logic.run(loaded, [state, None], app_files["queries"], tmp_path)
    state.mask = app_files["truth"][0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(UploadError, match="bad.jpg"):
        logic.run(loaded, [state], [app_files["queries"][0], bad], tmp_path)
    with pytest.raises(InputError, match="upload one or more query images"):
        logic.run(loaded, [state], [], tmp_path)
    with pytest.raises(InputError, match="model flags '--no-such-flag'"):
        logic.ModelSpec(str(app_files["ckpt"]), flags="--no-such-flag").args(1)


def test_hmnet_without_sam2_takes_painted_masks(app_files):
    hmnet = logic.load_model(logic.ModelSpec(str(app_files["hmnet"]), device="cpu"))
    assert hmnet.prompter is None and "paint masks" in hmnet.description
    state = logic.add_click(logic.new_support(app_files["supports"][0]), 5, 5, logic.OBJECT)
    with pytest.raises(InputError, match="holds no SAM 2.*paint the mask"):
        logic.update_mask(hmnet, state)
