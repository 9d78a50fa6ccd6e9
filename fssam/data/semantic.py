"""Base-class semantic segmentation: the data of a base learner's stage (README: Training HMNet).

Every image of a fold's list, novel-class images included (as BAM trains its PSPNet),
with its label remapped to the fold's base classes: the j-th base class in ascending id
order -> j (1..B), every other class -> 0 (background), 255 kept. Training items are
augmented by the episodic chain (``train_transform``: scale, rotation, blur, flip, crop;
its crop test counts label 1, the first base class, as BAM's does); validation items are
letterboxed (``letterbox``). Training item i is a pure function of (seed, epoch, i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from fssam.contract import IGNORE_LABEL
from fssam.data import transforms as T
from fssam.data.bad_files import in_episode
from fssam.data.folds import base_classes, num_classes
from fssam.data.sources import MODES, checked_pairs, read_pair


def base_label_table(base_ids: Sequence[int], max_class: int) -> np.ndarray:
    """Lookup table of 256 entries: base class -> rank + 1 in the ascending base list,
    other classes 0..``max_class`` -> 0, 255 -> 255; values that are no class -> -1."""
    table = np.full(256, -1, dtype=np.int16)
    table[:max_class + 1] = 0
    table[IGNORE_LABEL] = IGNORE_LABEL
    for rank, class_id in enumerate(sorted(base_ids)):
        table[class_id] = rank + 1
    return table


def remap_label(label: np.ndarray, table: np.ndarray, path: str) -> np.ndarray:
    """``label`` through ``base_label_table``; ValueError naming ``path`` on values that are
    no class."""
    out = table[label]
    if (out < 0).any():
        bad = sorted(int(v) for v in np.unique(label[out < 0]))
        known = int((table[:IGNORE_LABEL] >= 0).sum()) - 1
        raise ValueError(f"label {path} has values {bad} outside 0..{known} and 255")
    return out.astype(np.uint8)


class BaseClassDataset(Dataset):
    """Items ``{"image": (3,S,S) float RGB 0..255, "label": (S,S) int64}`` of ``pairs``
    (image, label paths) with labels over ``base_ids``; ``mode`` "train" (augmented crops
    of ``image_size``) or "val" (``image_size`` letterbox)."""

    def __init__(self, *, pairs: Sequence[tuple[str, str]], base_ids: Sequence[int],
                 max_class: int, mode: str, image_size: int, seed: int = 0,
                 scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
        if not pairs:
            raise ValueError(f"empty {mode} list: no images for the base-class stage")
        self.pairs, self.mode, self.image_size, self.seed = list(pairs), mode, image_size, seed
        self.num_base_classes = len(base_ids)
        self.table = base_label_table(base_ids, max_class)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Training items depend on the epoch; call before each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range 0..{len(self) - 1}")
        image_path, label_path = self.pairs[index]
        try:
            image, label = read_pair(image_path, label_path)
            label = remap_label(label, self.table, label_path)
        except (OSError, ValueError) as err:
            raise in_episode(err, f"{self.mode} item {index} of epoch {self.epoch}") from err
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, label = T.train_transform(image, label, size=self.image_size,
                                             scale_range=self.scale_range, rng=rng)
        else:
            image, label = T.letterbox(image, label, self.image_size)
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "label": torch.from_numpy(label.astype(np.int64))}


def build_base_dataset(*, dataset: str, root: str, fold: int, mode: str, image_size: int = 417,
                       seed: int = 0, coco_folds: str = "interleaved",
                       scale_range: tuple[float, float] = (0.5, 2.0),
                       train_list: str | None = None,
                       val_list: str | None = None) -> BaseClassDataset:
    """The base-class dataset of one fold: every image of the training list
    (``train_list``, see ``fssam.data.train_lists``) or of the validation list
    (``val_list``)."""
    base = base_classes(dataset, fold, coco_folds)
    pairs = checked_pairs(dataset=dataset, root=root, mode=mode, train_list=train_list,
                          val_list=val_list)
    return BaseClassDataset(pairs=pairs, base_ids=base, max_class=num_classes(dataset),
                            mode=mode, image_size=image_size, seed=seed,
                            scale_range=scale_range)
