"""Synthetic few-shot segmentation datasets written in the real PASCAL and COCO layouts.

``make_toy_pascal(root, num_images=400, seed=0)`` writes (20 classes)::

    root/VOC2012/JPEGImages/<id>.jpg
    root/VOC2012/SegmentationClassAug/<id>.png     class-index label: 0 bg, 1..20, 255 ignore
    root/VOC2012/ImageSets/Segmentation/train.txt  ids of the training images
    root/VOC2012/ImageSets/Segmentation/val.txt    ids of the validation images

``make_toy_coco(root, num_images=1200, seed=0)`` writes (80 classes)::

    root/{train2014,val2014}/COCO_<subset>_<12-digit id>.jpg
    root/annotations/{train2014,val2014}/COCO_<subset>_<12-digit id>.png

Both also write ``root/toy_meta.json`` (class appearance; per image, the labelled pixel
count of each class) and return it. Each class is a distinct (shape, colour, texture)
triple (``fssam.tools.toy_draw``); an image holds 2-4 objects with occlusion and 255
bands on instance borders, and every object keeps >= 2·32·32 + 256 labelled pixels, so
each occurrence is eligible. Classes are dealt to images from shuffled decks, so every
class occurs about equally often in each subset (train, val), and the classes of a
validation image are distinct. In the training subset, with probability ``same_fold_p`` an extra object
takes a class of the first object's fold group (classes that are novel together in
every supported fold scheme), which keeps enough all-base images for training. Output is a
pure function of the arguments (bytes included), whatever ``workers`` is.

Writing into a root that already holds a toy dataset replaces it (stale files of a
larger earlier run are removed); a root holding other images is refused.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fssam.tools.toy_draw import class_table, render_scene

log = logging.getLogger(__name__)

MIN_ELIGIBLE_PIXELS = 2 * 32 * 32
MIN_OBJECT_PIXELS = MIN_ELIGIBLE_PIXELS + 256
META_FILE = "toy_meta.json"


def _pascal_group(c: int) -> int:
    """PASCAL-5i: classes 5i+1..5i+5 are novel together."""
    return (c - 1) // 5


def _coco_group(c: int) -> int:
    """COCO-20i: classes novel together in both the interleaved and contiguous folds."""
    return ((c - 1) // 20) * 4 + (c - 1) % 4


def _deal_classes(rng: np.random.Generator, num_images: int, num_classes: int,
                  group_of: Callable[[int], int], same_fold_p: float) -> list[list[int]]:
    """Classes of each image: 2-4 objects, first from a shuffled deck of all classes."""
    groups: dict[int, list[int]] = {}
    for c in range(1, num_classes + 1):
        groups.setdefault(group_of(c), []).append(c)
    deck: list[int] = []

    def draw(taken: list[int]) -> int:
        """Top card of the deck not yet in the image (refilled when needed)."""
        if len(set(deck) - set(taken)) == 0:
            deck[:0] = [int(c) + 1 for c in rng.permutation(num_classes)]
        k = max(i for i, c in enumerate(deck) if c not in taken)
        return deck.pop(k)

    images = []
    for _ in range(num_images):
        classes = [draw([])]
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < same_fold_p:
                group = groups[group_of(classes[0])]
                classes.append(group[int(rng.integers(len(group)))])
            else:
                classes.append(draw(classes))
        images.append(classes)
    return images


def _render_job(job: dict[str, Any]) -> dict[int, int]:
    """Render one image, write its JPEG and PNG; returns {class id: labelled pixels}."""
    rng = np.random.default_rng(job["seed"])
    lo, hi = job["size"]
    size = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
    table = class_table(job["num_classes"])
    img, label = render_scene(rng, size, job["classes"], table, MIN_OBJECT_PIXELS,
                              small=job.get("small"))
    if not cv2.imwrite(job["image"], img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise OSError(f"cannot write {job['image']}")
    if not cv2.imwrite(job["label"], label):
        raise OSError(f"cannot write {job['label']}")
    counts = np.bincount(label.ravel(), minlength=256)
    return {int(i): int(counts[i]) for i in np.flatnonzero(counts[1:255]) + 1}


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _run_jobs(jobs: list[dict[str, Any]], workers: int) -> list[dict[int, int]]:
    if workers <= 1 or len(jobs) < 16:
        return [_render_job(j) for j in jobs]
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        return pool.map(_render_job, jobs, chunksize=8)


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _clear_previous(root: Path, folders: set[Path]) -> None:
    """Remove the files of an earlier toy dataset; refuse to touch anything else."""
    existing = [f for d in folders if d.is_dir() for f in d.iterdir() if f.is_file()]
    if not existing:
        return
    if not (root / META_FILE).is_file():
        raise FileExistsError(f"{root} already holds dataset files (e.g. {existing[0]}) and is "
                              f"not a toy dataset ({META_FILE} missing); choose another root")
    for f in existing:
        f.unlink()


def _generate(root: Path, layout: str, subsets: dict[str, list[tuple[str, str, str]]],
              num_classes: int, group_of: Callable[[int], int], seed: int,
              size: tuple[int, int], same_fold_p: float, workers: int | None,
              small_object_p: float = 0.0) -> dict[str, Any]:
    """Render every (name, image path, label path) of every subset and write the meta file."""
    folders = {Path(path).parent for entries in subsets.values() for _, *paths in entries
               for path in paths}
    _clear_previous(root, folders)
    jobs = []
    for subset_index, (subset, entries) in enumerate(subsets.items()):
        deal_rng = np.random.default_rng([seed, subset_index, 0])
        p = same_fold_p if subset_index == 0 else 0.0
        dealt = _deal_classes(deal_rng, len(entries), num_classes, group_of, p)
        small_rng = np.random.default_rng([seed, subset_index, 2])
        for i, ((name, image, label), classes) in enumerate(zip(entries, dealt)):
            small = None
            if small_object_p and small_rng.random() < small_object_p:
                small = int(small_rng.integers(1, num_classes + 1))
            jobs.append({"subset": subset, "name": name, "image": image, "label": label,
                         "classes": classes, "seed": [seed, subset_index, 1, i],
                         "num_classes": num_classes, "size": size, "small": small})
    root.mkdir(parents=True, exist_ok=True)
    (root / META_FILE).write_text(json.dumps({"layout": layout, "complete": False}))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    counts = _run_jobs(jobs, _default_workers() if workers is None else workers)
    images: dict[str, dict[str, dict[str, int]]] = {subset: {} for subset in subsets}
    for job, pixels in zip(jobs, counts):
        images[job["subset"]][job["name"]] = {str(c): n for c, n in sorted(pixels.items())}
    meta = {
        "layout": layout,
        "seed": seed,
        "num_classes": num_classes,
        "classes": [dict(id=i + 1, **vars(t)) for i, t in enumerate(class_table(num_classes))],
        "images": images,
    }
    (root / META_FILE).write_text(json.dumps(meta, indent=1))
    log.info("wrote %d %s toy images under %s", len(jobs), layout, root)
    return meta


def _subset_sizes(num_images: int, val_fraction: float) -> tuple[int, int]:
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2, got {num_images}")
    val = min(num_images - 1, max(1, round(num_images * val_fraction)))
    return num_images - val, val


def make_toy_pascal(root: str | os.PathLike, num_images: int = 400, seed: int = 0, *,
                    size: tuple[int, int] = (160, 256), val_fraction: float = 0.35,
                    same_fold_p: float = 0.75, workers: int | None = None,
                    small_object_p: float = 0.0) -> dict[str, Any]:
    """Write a 20-class dataset in the PASCAL VOC2012 + SegmentationClassAug layout.

    ``size`` bounds the height and width (each drawn independently). With probability
    ``small_object_p`` an image also gets a small object (fewer than 2·32·32 pixels) of a
    random class: present in the label, not eligible. Returns the meta dict.
    """
    root = Path(root)
    voc = root / "VOC2012"
    n_train, n_val = _subset_sizes(num_images, val_fraction)
    subsets: dict[str, list[tuple[str, str, str]]] = {}
    for subset, count, offset in (("train", n_train, 0), ("val", n_val, n_train)):
        names = [f"2012_{offset + i + 1:06d}" for i in range(count)]
        subsets[subset] = [
            (n, str(voc / "JPEGImages" / f"{n}.jpg"),
             str(voc / "SegmentationClassAug" / f"{n}.png"))
            for n in names
        ]
    meta = _generate(root, "pascal", subsets, 20, _pascal_group, seed, size, same_fold_p, workers,
                     small_object_p)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for subset, entries in subsets.items():
        (lists / f"{subset}.txt").write_text("".join(f"{name}\n" for name, _, _ in entries))
    return meta


def make_toy_coco(root: str | os.PathLike, num_images: int = 1200, seed: int = 0, *,
                  size: tuple[int, int] = (160, 256), val_fraction: float = 0.35,
                  same_fold_p: float = 0.75, workers: int | None = None,
                  small_object_p: float = 0.0) -> dict[str, Any]:
    """Write an 80-class dataset in the COCO2014 layout with class-index PNG labels
    (``small_object_p`` as in ``make_toy_pascal``)."""
    root = Path(root)
    n_train, n_val = _subset_sizes(num_images, val_fraction)
    subsets: dict[str, list[tuple[str, str, str]]] = {}
    for subset, count, offset in (("train2014", n_train, 0), ("val2014", n_val, n_train)):
        stems = [f"COCO_{subset}_{offset + i + 1:012d}" for i in range(count)]
        subsets[subset] = [
            (s, str(root / subset / f"{s}.jpg"), str(root / "annotations" / subset / f"{s}.png"))
            for s in stems
        ]
    return _generate(root, "coco", subsets, 80, _coco_group, seed, size, same_fold_p, workers,
                     small_object_p)


def eligible_counts(meta: dict[str, Any],
                    min_pixels: int = MIN_ELIGIBLE_PIXELS) -> dict[str, dict[int, int]]:
    """Per subset, the number of images in which each class has >= ``min_pixels`` pixels."""
    out: dict[str, dict[int, int]] = {}
    for subset, images in meta["images"].items():
        counts = {c: 0 for c in range(1, meta["num_classes"] + 1)}
        for pixels in images.values():
            for c, n in pixels.items():
                counts[int(c)] += n >= min_pixels
        out[subset] = counts
    return out
