"""Prompted supports (support_annotation=points|scribble): drawn from the resized support
label, a pure function of (protocol, seed, episode index), whatever the loader's workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fssam.data import build_dataset, collate_episodes
from fssam.data.support_prompts import (episode_rng, random_scribble, sample_points,
                                        support_prompt)

SIZE = 64


def make(root: Path, cache: Path, **kwargs):
    settings = {"dataset": "pascal", "fold": 0, "shot": 2, "mode": "val", "image_size": SIZE,
                "num_episodes": 8, "seed": 5, "train_list": "all", **kwargs}
    return build_dataset(root=str(root), cache_dir=str(cache), **settings)


def test_points_are_distinct_mask_pixels_as_x_y():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 20:28] = 1  # 24 pixels, columns 20..27, rows 2..4
    mask[10, :] = 255  # ignore is not object
    points, labels = sample_points(mask, 20, np.random.default_rng(0))
    assert points.shape == (20, 2) and points.dtype == np.float32 and (labels == 1).all()
    assert (points[:, 0] >= 20).all() and (points[:, 1] <= 4).all()  # x is the column
    assert len({tuple(p) for p in points.tolist()}) == 20
    small = np.zeros((20, 30), np.uint8)
    small[3, 4:7] = 1  # 3 pixels: 3 clicks, the rest padding
    points, labels = sample_points(small, 5, np.random.default_rng(0))
    assert labels.tolist() == [1, 1, 1, -1, -1]
    assert sorted(points[:3].tolist()) == [[4, 3], [5, 3], [6, 3]]
    _, labels = sample_points(np.zeros((4, 4), np.uint8), 5, np.random.default_rng(0))
    assert (labels == -1).all()  # an object lost in the resize: no click


def test_scribbles_stay_inside_the_mask():
    mask = np.zeros((128, 128), np.uint8)
    mask[20:100, 30:110] = 1
    mask[60, :] = 255
    scribble = random_scribble(mask, np.random.default_rng(1))
    assert scribble.dtype == np.uint8 and set(np.unique(scribble)) == {0, 1}
    assert (mask[scribble == 1] == 1).all() and 30 < scribble.sum() < (mask == 1).sum()
    again = random_scribble(mask, np.random.default_rng(1))
    np.testing.assert_array_equal(scribble, again)
    assert not random_scribble(np.zeros((8, 8), np.uint8), np.random.default_rng(0)).any()
    with pytest.raises(ValueError, match="unknown prompted annotation"):
        support_prompt("polygon", mask, np.random.default_rng(0))


def test_episode_generators_are_keyed_by_protocol_seed_and_index():
    draw = lambda *key: episode_rng(*key).integers(1 << 30)  # noqa: E731
    assert draw("seeds", 5, 3) == draw("seeds", 5, 3)
    assert len({draw("seeds", 5, 3), draw("seeds", 5, 4), draw("seeds", 6, 3),
                draw("release", 5, 3)}) == 4


@pytest.mark.parametrize("kind", ["points", "scribble"])
def test_items_carry_prompts_from_the_ground_truth(pascal_root, tmp_path, kind):
    prompted = make(pascal_root, tmp_path, support_annotation=kind, support_points=7)
    masks = make(pascal_root, tmp_path)
    assert prompted.episodes == masks.episodes  # the prompts take their own random numbers
    for index in range(len(prompted)):
        item, truth = prompted[index], masks[index]["support_masks"]
        assert "support_masks" not in item  # the ground truth never reaches the model
        torch.testing.assert_close(item["support_imgs"], masks[index]["support_imgs"])
        if kind == "points":
            assert item["support_points"].shape == (2, 7, 2)
            assert item["support_point_labels"].shape == (2, 7)
            for k in range(2):
                keep = item["support_point_labels"][k] == 1
                xs, ys = item["support_points"][k][keep].long().unbind(1)
                assert keep.any() and (truth[k][ys, xs] == 1).all()
        else:
            scribble = item["support_scribbles"]
            assert scribble.shape == (2, SIZE, SIZE) and scribble.dtype == torch.uint8
            assert scribble.any() and (truth[scribble == 1] == 1).all()


@pytest.mark.parametrize("kind", ["points", "scribble"])
def test_prompts_do_not_depend_on_workers_or_order(pascal_root, tmp_path, kind):
    dataset = make(pascal_root, tmp_path, support_annotation=kind)
    key = "support_points" if kind == "points" else "support_scribbles"
    reference = [dataset[i][key] for i in range(len(dataset))]
    backwards = {i: dataset[i][key] for i in reversed(range(len(dataset)))}
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_episodes)
    workers = [row for batch in loader for row in batch[key]]
    for index, expected in enumerate(reference):
        assert torch.equal(backwards[index], expected) and torch.equal(workers[index], expected)
    again = make(pascal_root, tmp_path / "other", support_annotation=kind)
    assert all(torch.equal(again[i][key], reference[i]) for i in range(len(reference)))
