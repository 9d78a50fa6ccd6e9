"""Support prompts -> masks by SAM 2's promptable path: equal to what sam2's own
SAM2ImagePredictor returns for the same image and prompt (micro SAM 2, fixture weights);
coordinates are (x, y) pixels of the prompted image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from fssam.data.user_images import to_model_input
from fssam.models.fssam import sam2_adapter as sam
from fssam.data.support_prompts import Prompt, scribble_points, scribble_prompt
from fssam.models.fssam.prompts import (batch_prompt_masks, decode_prompt, prompt_logits,
                                        prompt_mask)

from .conftest import micro_sam2

H, W = 96, 160  # the prompted image, not square and not the model's 128


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A smooth RGB image with a bright disc and a dark bar (uint8, H x W)."""
    yy, xx = np.mgrid[:H, :W]
    rgb = np.stack([xx * 255 / W, yy * 255 / H, np.full((H, W), 90.0)], -1)
    rgb[(yy - 40) ** 2 + (xx - 50) ** 2 < 20 ** 2] = (250, 240, 30)
    rgb[60:80, 90:150] = (20, 30, 200)
    return rgb.round().astype(np.uint8)


@pytest.fixture(scope="module")
def setup(image, one_thread):
    """The micro SAM 2, our features of the image, and a predictor on the same input."""
    sam2 = micro_sam2()
    size = sam2.image_size
    model_input, _ = to_model_input(image, None, size, "image")
    feats = sam.image_features(sam2, model_input[None])
    predictor = SAM2ImagePredictor(sam2)
    # the predictor hard-codes the feature sizes of a 1024 input
    predictor._bb_feat_sizes = [(size // 4,) * 2, (size // 8,) * 2, (size // 16,) * 2]
    # the same model input (a float image is not rescaled by its ToTensor, and a resize to
    # the size it has is none); then the original size, which frames prompts and output
    resized = model_input.permute(1, 2, 0).numpy() / np.float32(255)
    predictor.set_image(resized)
    predictor._orig_hw = [(H, W)]
    return sam2, feats, predictor


def _predictor_mask(predictor: SAM2ImagePredictor, prompt: Prompt
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The predictor's (binary mask, logits) at (H, W), the best of three when multimask."""
    points = prompt.points if len(prompt.points) else None
    labels = prompt.labels if len(prompt.points) else None
    logits, ious, _ = predictor.predict(point_coords=points, point_labels=labels,
                                        box=prompt.box, multimask_output=prompt.multimask,
                                        return_logits=True)
    best = int(np.argmax(ious))
    return logits[best] > 0, logits[best]


PROMPTS = {
    "one click": Prompt([[50, 40]], [1]),
    "clicks": Prompt([[50, 40], [120, 70], [10, 90]], [1, 1, 0]),
    "box": Prompt(box=[28, 18, 75, 62]),
    "box and clicks": Prompt([[52, 41], [70, 20]], [1, 0], box=[28, 18, 75, 62]),
    "negative only": Prompt([[5, 5], [150, 10]], [0, 0]),
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_equals_sam2_image_predictor(setup, name):
    sam2, feats, predictor = setup
    prompt = PROMPTS[name]
    expected_mask, expected_logits = _predictor_mask(predictor, prompt)
    logits = prompt_logits(sam2, feats, prompt, (H, W)).numpy()
    assert logits.shape == (H, W)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-5, rtol=0)
    mask = prompt_mask(sam2, feats, prompt, (H, W))
    assert mask.dtype == bool and mask.shape == (H, W) and 0 < mask.mean() < 1
    np.testing.assert_array_equal(mask, expected_mask)


def test_scribble_equals_the_predictor_on_its_points(setup):
    sam2, feats, predictor = setup
    scribble = np.zeros((H, W), bool)
    scribble[38:41, 35:66] = True  # a horizontal stroke across the disc
    scribble[30:52, 49:51] = True  # and a vertical one
    prompt = scribble_prompt(scribble)
    assert len(prompt.points) == 20 and (prompt.labels == 1).all()
    expected, _ = _predictor_mask(predictor, prompt)
    np.testing.assert_array_equal(prompt_mask(sam2, feats, prompt, (H, W)), expected)


def test_coordinates_are_x_y_pixels_of_the_prompted_image(setup):
    sam2, feats, _ = setup
    size = sam2.image_size
    here = decode_prompt(sam2, feats, Prompt([[50, 40]], [1]), (H, W))
    # the same click given in the model input's frame (S x S pixels)
    there = decode_prompt(sam2, feats, Prompt([[50 * size / W, 40 * size / H]], [1]),
                          (size, size))
    assert here.lowres.shape == (1, 1, size // 4, size // 4) and here.multimask
    torch.testing.assert_close(here.lowres, there.lowres, atol=1e-6, rtol=0)
    swapped = decode_prompt(sam2, feats, Prompt([[40, 50]], [1]), (H, W))  # (y, x): not it
    assert not torch.allclose(here.lowres, swapped.lowres, atol=1e-3)
    box = decode_prompt(sam2, feats, Prompt(box=[28, 18, 75, 62]), (H, W))
    corners = decode_prompt(sam2, feats, Prompt([[28, 18], [75, 62]], [1, 1]), (H, W))
    assert not box.multimask and not torch.allclose(box.lowres, corners.lowres, atol=1e-3)


def test_click_order_does_not_matter_and_prompts_are_checked(setup):
    sam2, feats, _ = setup
    prompt = PROMPTS["clicks"]
    reordered = Prompt(prompt.points[::-1], prompt.labels[::-1])
    torch.testing.assert_close(prompt_logits(sam2, feats, prompt, (H, W)),
                               prompt_logits(sam2, feats, reordered, (H, W)), atol=1e-5, rtol=0)
    assert not prompt_mask(sam2, feats, Prompt(), (H, W)).any()  # empty prompt: empty mask
    with pytest.raises(ValueError, match="labels must be 1 or 0"):
        Prompt([[1, 2]], [2])
    with pytest.raises(ValueError, match="x1 < x2"):
        Prompt(box=[10, 10, 5, 20])
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        Prompt([[1, 2], [3, 4]], [1])


def test_scribble_points_spread_along_the_stroke():
    scribble = np.zeros((50, 80), bool)
    scribble[10, 5:75] = True  # a horizontal line, 70 px
    points = scribble_points(scribble, max_points=3)
    assert points.dtype == np.float32 and points.shape == (3, 2)
    assert points[0].tolist() == [39.0, 10.0]  # the pixel nearest the centroid (x, y)
    assert sorted(points[1:, 0].tolist()) == [5.0, 74.0]  # then the two ends
    assert scribble[points[:, 1].astype(int), points[:, 0].astype(int)].all()
    assert len(scribble_points(np.eye(4, dtype=bool), max_points=20)) == 4  # at most its pixels
    assert scribble_points(np.zeros((4, 4), bool)).shape == (0, 2)
    np.testing.assert_array_equal(scribble_points(scribble), scribble_points(scribble))


def test_batch_masks_one_support_at_a_time(setup, image):
    """Batch prompts (model frame, -1 pads) give each support the mask of its own prompt."""
    sam2, feats, _ = setup
    size = sam2.image_size
    both = sam.ImageFeatures.cat([feats, feats])
    points = torch.tensor([[[[60.0, 50.0], [0, 0]], [[20.0, 30.0], [100.0, 90.0]]]])
    labels = torch.tensor([[[1, -1], [1, 0]]])
    batch = {"support_imgs": torch.zeros(1, 2, 3, size, size), "support_points": points,
             "support_point_labels": labels}
    masks = batch_prompt_masks(sam2, both, batch)
    assert masks.shape == (1, 2, size, size) and masks.dtype == torch.int64
    first = prompt_mask(sam2, feats, Prompt([[60, 50]], [1]), (size, size))
    second = prompt_mask(sam2, feats, Prompt([[20, 30], [100, 90]], [1, 0]), (size, size))
    np.testing.assert_array_equal(masks[0, 0].numpy(), first)
    np.testing.assert_array_equal(masks[0, 1].numpy(), second)
