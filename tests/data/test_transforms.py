"""Paired image/label transforms."""

import numpy as np
import pytest

from fssam.data import transforms as T


def sample_pair(h: int = 60, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    label = np.zeros((h, w), np.uint8)
    label[10:30, 20:50] = 3
    label[40:45, :] = 255
    return image, label


def test_binarize_keeps_ignore() -> None:
    label = np.array([[0, 3, 255, 4]], np.uint8)
    assert T.binarize(label, 3).tolist() == [[0, 1, 255, 0]]
    assert T.binarize(label, 3).dtype == np.uint8


@pytest.mark.parametrize("seed", range(8))
def test_train_transform_shapes_and_values(seed: int) -> None:
    image, label = sample_pair()
    out_image, out_label = T.train_transform(image, T.binarize(label, 3), size=64,
                                             scale_range=(0.8, 1.25),
                                             rng=np.random.default_rng(seed))
    assert out_image.shape == (64, 64, 3) and out_image.dtype == np.float32
    assert out_label.shape == (64, 64) and out_label.dtype == np.uint8
    assert set(np.unique(out_label)) <= {0, 1, 255}
    assert out_image.min() >= 0 and out_image.max() <= 255


def test_train_transform_is_deterministic_in_rng() -> None:
    image, label = sample_pair()
    label = T.binarize(label, 3)
    runs = [T.train_transform(image, label, size=48, scale_range=(0.9, 1.1),
                              rng=np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_rotation_pads_ignore_and_mean() -> None:
    image = np.zeros((50, 50, 3), np.float32)
    label = np.zeros((50, 50), np.uint8)
    rotated_image, rotated_label = T.rotate(image, label, 10.0)
    assert rotated_label[0, 0] == 255 and rotated_label[25, 25] == 0
    np.testing.assert_allclose(rotated_image[0, 0], T.MEAN_RGB, rtol=1e-6)
    assert set(np.unique(rotated_label)) == {0, 255}


def test_scale_sizes_and_nearest_labels() -> None:
    image, label = sample_pair(60, 80)
    out_image, out_label = T.scale(image, T.binarize(label, 3), 1.5)
    assert out_image.shape == (90, 120, 3) and out_label.shape == (90, 120)
    assert set(np.unique(out_label)) == {0, 1, 255}


def test_hflip_and_blur() -> None:
    image, label = sample_pair()
    flipped_image, flipped_label = T.hflip(image, label)
    np.testing.assert_array_equal(flipped_label, label[:, ::-1])
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    blurred = T.blur(image)
    assert blurred.shape == image.shape and not np.array_equal(blurred, image)


def test_crop_pads_small_images() -> None:
    image, label = sample_pair(30, 40)
    out_image, out_label = T.random_crop(image, T.binarize(label, 3), 64, np.random.default_rng(0))
    assert out_image.shape == (64, 64, 3)
    assert out_label[0, 0] == 255 and (out_label == 1).sum() == (label == 3).sum()
    np.testing.assert_allclose(out_image[0, 0], T.MEAN_RGB, rtol=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_crop_keeps_target(seed: int) -> None:
    label = np.zeros((200, 200), np.uint8)
    label[150:170, 10:30] = 1  # small object near a corner: most crops miss it
    image = np.zeros((200, 200, 3), np.float32)
    _, crop = T.random_crop(image, label, 100, np.random.default_rng(seed))
    assert (crop == 1).sum() >= 0.85 * 400


def test_eval_transform_sizes() -> None:
    image, label = sample_pair(60, 80)
    out_image, out_label = T.eval_transform(image, T.binarize(label, 3), 32)
    assert out_image.shape == (32, 32, 3) and out_label.shape == (32, 32)
    assert set(np.unique(out_label)) == {0, 1, 255}


class _CountingRng:
    """A numpy Generator that counts the crop positions drawn."""

    def __init__(self) -> None:
        self.rng, self.calls = np.random.default_rng(0), 0

    def integers(self, *args, **kwargs):
        self.calls += 1
        return self.rng.integers(*args, **kwargs)


def test_crop_redraws_as_often_as_the_release() -> None:
    # a target that no 100x100 crop can hold 85% of: the release draws once, then redraws
    # 31 times (its loop runs while the count is <= 30) and keeps the last crop
    label = np.zeros((300, 300), np.uint8)
    label[0:10, :] = 1
    label[290:, :] = 1
    rng = _CountingRng()
    T.random_crop(np.zeros((300, 300, 3), np.float32), label, 100, rng)
    assert rng.calls == 2 * 32  # a row and a column offset per draw
