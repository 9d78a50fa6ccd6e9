"""Episodic few-shot datasets of PASCAL-5i / COCO-20i.

An episode: a query image, a class drawn uniformly among the fold's classes present in
its label (base for training, novel for evaluation), and K distinct support images in
which that class is eligible, none the query (``fssam.data.protocol``). Labels are
binarised: 1 on the class, 255 kept, 0 elsewhere. Box supports are the filled boxes of
the support label's components, drawn on the label before any transform. Prompted
supports (``points``, ``scribble``; evaluation only) carry clicks or a scribble drawn from
the resized support label instead of a mask (``fssam.data.support_prompts``): the model
makes the support masks of them with its own SAM 2.
Training items also give the class's index in the ascending base list
(``base_class_index``, for methods with a base learner).
Evaluation episodes are a sequence computed up front by the chosen protocol (the
releases' sequence, or ours, a pure function of (seed, i)); training item i is a pure
function of (seed, epoch, i), so results do not depend on workers, processes or
resumption. Evaluation items also name their images (``query_id``, ``support_ids``): the
same name means the same model input, which lets evaluation reuse what frozen encoders
computed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from fssam.contract import IGNORE_LABEL, image_identity
from fssam.data import benchmarks
from fssam.data import support_prompts as P
from fssam.data import transforms as T
from fssam.data.bad_files import check_label_values, in_episode
from fssam.data.benchmarks import INDEX
from fssam.data.folds import fold_classes, num_classes
from fssam.data.protocol import (PROTOCOLS, SEEDS, Episode, draw_episode, episode_sequence,
                                 sequence_fingerprint, usable_classes)
from fssam.data.sources import (MODES, ImageRecord, build_image_list, class_index,
                                read_episode_pair, read_pair)

log = logging.getLogger(__name__)

SUPPORT_ANNOTATIONS = ("mask", "bbox", *P.PROMPTED)


def boxes_from_mask(mask: np.ndarray) -> np.ndarray:
    """The releases' box support: each 8-connected component of ``mask == 1`` becomes a
    filled box from its first row and column to one pixel past its last (clipped to the
    image), then every pixel that was 255 is 255 again; 0 elsewhere."""
    out = np.zeros(mask.shape, dtype=np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats((mask == 1).astype(np.uint8), connectivity=8)
    for x, y, w, h, _ in stats[1:]:
        out[y:y + h + 1, x:x + w + 1] = 1
    out[mask == IGNORE_LABEL] = IGNORE_LABEL
    return out


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def _mask_tensor(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(label.astype(np.int64))


class EpisodicDataset(Dataset):
    """Training (`mode="train"`, one item per query image) or evaluation
    (`mode="val"`, `num_episodes` items) episodes over `records`.

    Evaluation episodes follow ``protocol`` ("release": the releases' sequence for a loader
    of ``release_workers`` workers; "seeds": ours), drawn from ``seed``. A file that cannot
    be used (``fssam.data.bad_files``; label values above ``max_class`` but 255 when it is
    given) stops with a BadFileError naming it and the episode.
    """

    def __init__(self, *, records: Sequence[ImageRecord], class_ids: Sequence[int], shot: int,
                 mode: str, image_size: int = 512, num_episodes: int = 1000, seed: int = 0,
                 support_annotation: str = "mask",
                 scale_range: tuple[float, float] = (0.9, 1.1), protocol: str = SEEDS,
                 release_workers: int = 0, support_points: int = P.DEFAULT_POINTS,
                 max_class: int | None = None, labels: str = INDEX,
                 metric_size: int | None = None, release_rule: str = "fssam") -> None:
        _check_settings(mode=mode, shot=shot, support_annotation=support_annotation,
                        image_size=image_size, num_episodes=num_episodes, seed=seed,
                        protocol=protocol, release_workers=release_workers,
                        support_points=support_points)
        if not records:
            raise ValueError(f"empty {mode} list: no images to draw episodes from")
        self.records = list(records)
        self.class_ids = [int(c) for c in class_ids]
        self.shot, self.mode, self.image_size = shot, mode, image_size
        self.num_episodes, self.seed = num_episodes, seed
        self.support_annotation = support_annotation
        self.support_points = support_points
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.max_class = max_class
        self.epoch = 0
        self.images_of_class = class_index(self.records)
        # training: a class's 0-based index in the ascending list of the fold's base classes
        # (the base list), the label a base learner gives it minus 1
        self.class_rank = {c: i for i, c in enumerate(sorted(self.class_ids))}
        self.protocol = protocol
        self.labels, self.metric_size = labels, metric_size
        self._check_class_counts()
        self.episodes: list[Episode] = []
        if mode == "val":
            self.episodes = episode_sequence(protocol, self.records, shot=shot,
                                             num_episodes=num_episodes, seed=seed,
                                             workers=release_workers,
                                             release_rule=release_rule)

    def fingerprint(self) -> str:
        """Names the evaluation episodes: protocol, seed and a hash of their images and
        classes (two datasets with the same fingerprint score the same inputs)."""
        return f"{self.protocol}:{self.seed}:{sequence_fingerprint(self.records, self.episodes)}"

    def _check_class_counts(self) -> None:
        for c in self.class_ids:
            if not self.images_of_class.get(c):
                log.warning("class %d has no eligible %s image; no episode will use it", c,
                            self.mode)
        # training draws its episodes as it goes; evaluation checks them in the sequence
        self.usable = (usable_classes(self.records, self.images_of_class, self.shot)
                       if self.mode == "train" else [])

    def set_epoch(self, epoch: int) -> None:
        """Training items depend on the epoch; call before each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_episodes if self.mode == "val" else len(self.records)

    def sample(self, index: int, rng: np.random.Generator) -> Episode:
        """The episode of item `index`: the precomputed evaluation episode, or for training
        the query `index` with class and supports drawn from `rng`."""
        if self.mode == "val":
            return self.episodes[index]
        return draw_episode(self.records, self.images_of_class, self.usable, self.shot, index,
                            rng)

    def _load(self, record_index: int, class_id: int, boxes: bool = False,
              where: str = "") -> tuple[np.ndarray, np.ndarray]:
        record = self.records[record_index]
        try:
            if self.labels == INDEX:
                image, label = read_pair(record.image, record.label)
                check_label_values(label, record.label, self.max_class)
                label = T.binarize(label, class_id)
            else:
                image, label = read_episode_pair(record.image, record.label, class_id,
                                                 self.labels)
        except (OSError, ValueError) as err:
            raise in_episode(err, where) from err
        return image, boxes_from_mask(label) if boxes else label

    def _transform(self, image: np.ndarray, label: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.mode == "train":
            return T.train_transform(image, label, size=self.image_size,
                                     scale_range=self.scale_range, rng=rng)
        return T.eval_transform(image, label, self.image_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"episode {index} out of range 0..{len(self) - 1}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        episode = self.sample(index, rng)
        query, class_id, supports = episode.query, episode.class_id, episode.supports
        where = self._episode_name(index)
        query_image, query_label = self._load(query, class_id, where=f"the query of {where}")
        image, mask = self._transform(query_image, query_label, rng)
        item = {"query_img": _image_tensor(image), "query_mask": _mask_tensor(mask)}
        support_imgs, support_masks, prompts = [], [], []
        boxes = self.support_annotation == "bbox"
        prompted = self.support_annotation in P.PROMPTED
        prompt_rng = P.episode_rng(self.protocol, self.seed, index) if prompted else None
        for k, j in enumerate(supports):
            name = f"support {k + 1} of {len(supports)} of {where}"
            image, mask = self._transform(*self._load(j, class_id, boxes, name), rng)
            support_imgs.append(_image_tensor(image))
            if prompted:
                prompts.append(P.support_prompt(self.support_annotation, mask, prompt_rng,
                                                points=self.support_points))
            else:
                support_masks.append(_mask_tensor(mask))
        item["support_imgs"] = torch.stack(support_imgs)
        if prompted:
            item.update(P.stack_prompts(prompts))
        else:
            item["support_masks"] = torch.stack(support_masks)
        item["class_id"] = torch.tensor(class_id, dtype=torch.int64)
        if self.mode == "train":
            item["base_class_index"] = torch.tensor(self.class_rank[class_id], dtype=torch.int64)
        if self.mode == "val":
            item["query_label"] = _mask_tensor(self._scored(query_label))
            item["episode"] = torch.tensor(index, dtype=torch.int64)
            item["query_id"] = self._identity(query)
            item["support_ids"] = [self._identity(j) for j in supports]
        return item

    def _episode_name(self, index: int) -> str:
        if self.mode == "train":
            return f"training episode {index} of epoch {self.epoch}"
        return f"evaluation episode {index} ({self.protocol} protocol, seed {self.seed})"

    def _scored(self, label: np.ndarray) -> np.ndarray:
        """The query mask the metric compares with: the label itself, or resized (nearest)
        to ``metric_size`` where the benchmark's reference scores at a fixed size."""
        if self.metric_size is None:
            return label
        size = (self.metric_size, self.metric_size)
        return cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)

    def _identity(self, record_index: int) -> str:
        """``image_identity`` of an evaluation image (resized by ``eval_transform``)."""
        return image_identity(self.records[record_index].image,
                              T.eval_transform_name(self.image_size))


def _check_settings(*, mode: str, shot: int, support_annotation: str, image_size: int,
                    num_episodes: int, seed: int, protocol: str = SEEDS,
                    release_workers: int = 0, support_points: int = P.DEFAULT_POINTS) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")
    if support_annotation not in SUPPORT_ANNOTATIONS:
        raise ValueError(f"unknown support_annotation {support_annotation!r} "
                         f"(expected one of {', '.join(SUPPORT_ANNOTATIONS)})")
    if mode == "train" and support_annotation in P.PROMPTED:
        raise ValueError(f"support_annotation={support_annotation} is for evaluation: the "
                         f"model turns the prompts into support masks with its SAM 2 when "
                         f"tested; train with mask or bbox supports")
    for name, value, low in (("shot", shot, 1), ("image_size", image_size, 1),
                             ("num_episodes", num_episodes, 1), ("seed", seed, 0),
                             ("release_workers", release_workers, 0),
                             ("support_points", support_points, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def build_dataset(*, dataset: str, root: str, fold: int, shot: int, mode: str,
                  image_size: int = 512, num_episodes: int = 1000, seed: int = 0,
                  coco_folds: str = "interleaved", support_annotation: str = "mask",
                  scale_range: tuple[float, float] = (0.9, 1.1), train_list: str | None = None,
                  val_list: str | None = None, cache_dir: str | None = None,
                  protocol: str = SEEDS, release_workers: int = 0,
                  support_points: int = P.DEFAULT_POINTS,
                  subset: str | None = None) -> EpisodicDataset:
    """Episodic dataset of one fold: base classes for `mode="train"`, novel for "val"
    (episodes of ``protocol``, see ``fssam.data.protocol``). ``subset``: the benchmark's
    list an evaluation reads, "val" (default) or "test" (``Benchmark.test_subset``: the
    same list as "val" where the benchmark has no test list of its own)."""
    _check_settings(mode=mode, shot=shot, support_annotation=support_annotation,
                    image_size=image_size, num_episodes=num_episodes, seed=seed,
                    protocol=protocol, release_workers=release_workers,
                    support_points=support_points)
    bench = benchmarks.get(dataset)
    subset = mode if mode == "train" or subset is None else subset
    if subset == "test":
        subset = bench.test_subset
    records = build_image_list(dataset=dataset, root=root, fold=fold, mode=subset,
                               coco_folds=coco_folds, train_list=train_list, val_list=val_list,
                               cache_dir=cache_dir, shot=shot)
    class_ids = list(dict.fromkeys(c for r in records for c in r.classes)) \
        if bench.data_classes is not None else fold_classes(dataset, subset, fold, coco_folds)
    return EpisodicDataset(records=records, class_ids=class_ids, shot=shot, mode=mode,
                           image_size=image_size, num_episodes=num_episodes, seed=seed,
                           support_annotation=support_annotation, scale_range=scale_range,
                           protocol=protocol, release_workers=release_workers,
                           support_points=support_points,
                           max_class=num_classes(dataset) if bench.labels == INDEX else None,
                           labels=bench.labels, metric_size=bench.metric_size,
                           release_rule=bench.release_rule)


def collate_episodes(items: Sequence[dict[str, Any]]) -> dict:
    """Stack every tensor key but `query_label` (original sizes differ); `query_label` and
    the image names (`query_id`, `support_ids`) become lists over the batch."""
    batch: dict = {}
    for key in items[0]:
        values = [item[key] for item in items]
        stack = isinstance(values[0], torch.Tensor) and key != "query_label"
        batch[key] = torch.stack(values) if stack else values
    return batch
