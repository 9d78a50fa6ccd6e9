"""Episode rules, support annotations and determinism on the tiny hand-made datasets."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from fssam.data import build_dataset, collate_episodes
from fssam.data.episodic import EpisodicDataset, boxes_from_mask
from fssam.data.folds import base_classes, novel_classes
from fssam.data.sources import read_label
from fssam.data.transforms import binarize, eval_transform

SIZE = 32


def make(root: Path, cache: Path, **kwargs) -> EpisodicDataset:
    settings = {"dataset": "pascal", "fold": 0, "shot": 2, "mode": "val", "image_size": SIZE,
                "num_episodes": 12, "seed": 3, "train_list": "all", **kwargs}
    return build_dataset(root=str(root), cache_dir=str(cache), **settings)


def check_episode_rules(dataset: EpisodicDataset, split: list[int], count: int) -> None:
    for index in range(count):
        rng = np.random.default_rng([dataset.seed, dataset.epoch, index])
        episode = dataset.sample(index, rng)
        query, class_id, supports = episode.query, episode.class_id, episode.supports
        assert query not in supports
        assert len(set(supports)) == len(supports) == dataset.shot
        assert class_id in split and class_id in dataset.records[query].present
        assert all(class_id in dataset.records[j].classes for j in supports)


def test_val_episode_rules(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path, num_episodes=200)
    assert len(dataset) == 200
    check_episode_rules(dataset, novel_classes("pascal", 0), 200)


def test_train_episode_rules(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path, mode="train")
    assert len(dataset) == len(dataset.records) == 6
    for epoch in range(20):
        dataset.set_epoch(epoch)
        check_episode_rules(dataset, base_classes("pascal", 0), len(dataset))


@pytest.mark.parametrize("mode", ["train", "val"])
def test_item_contents(pascal_root: Path, tmp_path: Path, mode: str) -> None:
    dataset = make(pascal_root, tmp_path, mode=mode, shot=2)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["query_img"].shape == (3, SIZE, SIZE)
        assert item["query_img"].dtype == torch.float32
        assert item["support_imgs"].shape == (2, 3, SIZE, SIZE)
        assert item["query_mask"].shape == (SIZE, SIZE) and item["query_mask"].dtype == torch.int64
        assert item["support_masks"].shape == (2, SIZE, SIZE)
        assert item["class_id"].dtype == torch.int64 and item["class_id"].ndim == 0
        masks = [item["query_mask"], item["support_masks"]]
        if mode == "val":
            assert item["query_label"].shape == (96, 128) and item["episode"].item() == index
            masks.append(item["query_label"])
        for mask in masks:
            assert set(mask.unique().tolist()) <= {0, 1, 255}
        if mode == "val":  # the ignore band (rows 88..95) survives the resize
            for mask in masks:
                assert (mask == 255).any() and (mask == 1).any()


def test_val_query_label_is_binarised_original(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path)
    for index in range(len(dataset)):
        item = dataset[index]
        episode = dataset.episodes[index]
        query, class_id = episode.query, episode.class_id
        assert class_id == item["class_id"].item()
        raw = torch.from_numpy(read_label(dataset.records[query].label).astype(np.int64))
        expected = torch.where(raw == class_id, 1, torch.where(raw == 255, 255, 0))
        assert torch.equal(item["query_label"], expected)


def test_boxes_from_mask_follows_the_release() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[1:3, 1:4] = 1
    mask[2, 2] = 0
    mask[6, 8] = 1
    mask[7, 9] = 1  # diagonal neighbour: same component
    mask[8, 11] = 1  # at the right edge: the box is clipped
    mask[9, :] = 255
    mask[2, 4] = 255  # inside the first box: stays 255
    boxes = boxes_from_mask(mask)
    expected = np.zeros((10, 12), np.uint8)
    expected[1:4, 1:5] = 1  # one row and one column past the component (inclusive end)
    expected[6:9, 8:11] = 1
    expected[8:10, 11] = 1
    expected[9, :] = 255  # ignore pixels win over the boxes
    expected[2, 4] = 255
    np.testing.assert_array_equal(boxes, expected)


def test_bbox_support_annotation(fresh_pascal: Path, tmp_path: Path) -> None:
    for name in ("2007_000001", "2007_000002", "2007_000003"):  # class 1 becomes a disc
        label = np.zeros((96, 128), np.uint8)
        label[88:] = 255
        cv2.circle(label, (40, 40), 30, 1, thickness=-1)
        assert cv2.imwrite(str(fresh_pascal / "SegmentationClassAug" / f"{name}.png"), label)
    masks = make(fresh_pascal, tmp_path, shot=1)
    boxes = make(fresh_pascal, tmp_path, shot=1, support_annotation="bbox")
    differ = 0
    for index in range(len(masks)):
        episode = boxes.episodes[index]
        support = boxes.records[episode.supports[0]]
        # the box is drawn on the original label, then resized with the image
        label = binarize(read_label(support.label), episode.class_id)
        _, expected = eval_transform(np.zeros((*label.shape, 3), np.float32),
                                     boxes_from_mask(label), SIZE)
        box = boxes[index]["support_masks"][0].numpy()
        np.testing.assert_array_equal(box, expected)
        mask = masks[index]["support_masks"][0].numpy()
        assert ((box == 1) >= (mask == 1)).all() and (box == 255).any()
        differ += not np.array_equal(box, mask)
    assert differ > 0


def episodes(loader: DataLoader) -> list[dict]:
    """Split collated batches back into items."""
    return [{key: batch[key][i] for key in batch} for batch in loader
            for i in range(len(batch["episode"]))]


def assert_same(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:  # image names
                assert a[key] == b[key], key


def test_val_determinism_workers_and_ranks(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path, num_episodes=10)
    reference = [dataset[i] for i in range(len(dataset))]
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=3, num_workers=workers,
                            collate_fn=collate_episodes)
        assert_same(episodes(loader), reference)
    shards = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)
        shards += episodes(DataLoader(dataset, batch_size=2, sampler=sampler,
                                      collate_fn=collate_episodes))
    shards.sort(key=lambda item: item["episode"].item())
    assert_same(shards, reference)
    assert_same([make(pascal_root, tmp_path / "other", num_episodes=10)[i] for i in range(10)],
                reference)
    other_seed = make(pascal_root, tmp_path, num_episodes=10, seed=4)
    assert not all(torch.equal(other_seed[i]["support_imgs"], reference[i]["support_imgs"])
                   for i in range(10))


def test_train_item_pure_in_seed_epoch_index(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path, mode="train")
    dataset.set_epoch(5)
    item = dataset[2]
    assert_same([dataset[2]], [item])
    again = make(pascal_root, tmp_path / "other", mode="train")
    again.set_epoch(5)
    assert_same([again[2]], [item])
    loader = DataLoader(again, batch_size=2, num_workers=2, collate_fn=collate_episodes)
    batch = list(loader)[1]
    assert torch.equal(batch["query_img"][0], item["query_img"])
    dataset.set_epoch(0)
    assert not all(torch.equal(dataset[2][k], item[k]) for k in item)  # epoch 0 differs
    assert not all(torch.equal(again[3][k], item[k]) for k in item)  # index differs


def test_collate_episodes(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path, shot=1)
    batch = collate_episodes([dataset[0], dataset[1], dataset[2]])
    assert batch["query_img"].shape == (3, 3, SIZE, SIZE)
    assert batch["support_masks"].shape == (3, 1, SIZE, SIZE)
    assert batch["class_id"].shape == (3,) and batch["episode"].tolist() == [0, 1, 2]
    assert isinstance(batch["query_label"], list) and len(batch["query_label"]) == 3
    assert batch["query_id"] == [dataset[i]["query_id"] for i in range(3)]
    assert batch["support_ids"] == [dataset[i]["support_ids"] for i in range(3)]


def test_image_names_identify_the_model_inputs(pascal_root: Path, tmp_path: Path) -> None:
    dataset = make(pascal_root, tmp_path, num_episodes=30)
    seen: dict[str, torch.Tensor] = {}
    repeats = 0
    for index in range(len(dataset)):
        item = dataset[index]
        images = [item["query_img"], *item["support_imgs"]]
        for name, image in zip([item["query_id"], *item["support_ids"]], images):
            assert f"resize{SIZE}x{SIZE}" in name
            if name in seen:
                repeats += 1
                assert torch.equal(seen[name], image)
            seen[name] = image
    assert repeats > 0 and len(set(seen)) == len({n.split("|")[0] for n in seen})
    training = make(pascal_root, tmp_path, mode="train")
    assert "query_id" not in training[0] and "support_ids" not in training[0]
