"""Chest X-ray (cross-domain, PATNet's protocol): lung segmentation, 1 class, test only.

Layout (the Kaggle "chest-xray-masks-and-labels" archive, PATNet's loader):
``CXR_png/<name>.png`` images and ``masks/<name>_mask.png`` lung masks (grey >= 128 is the
lung). Episodes are drawn from the masks, in sorted name order; a mask named like its image
(the archive's Montgomery ``MCUCXR_*`` masks have no ``_mask``) finds that image (PATNet cuts
``_mask.png`` from every name, which breaks on them). Test: 600 episodes, PATNet's draws
(NumPy seed 0), scored at 400 x 400.
"""

from __future__ import annotations

import os

from fssam.data.benchmarks.base import (
    ALL,
    BINARY,
    TEST,
    Benchmark,
    Pairs,
    missing_folders,
    pairs_from_list,
    sorted_images,
)

IMAGES, MASKS = "CXR_png", "masks"
SUFFIX = "_mask"


def image_of(root: str, mask: str) -> str:
    """The image of a mask: its name without ``_mask``."""
    stem = os.path.splitext(os.path.basename(mask))[0].removesuffix(SUFFIX)
    return os.path.join(root, IMAGES, f"{stem}.png")


def pairs(root: str, subset: str, chosen) -> Pairs:
    """(image, mask) of every mask in sorted name order."""
    if chosen.choice != ALL:
        return pairs_from_list(chosen.path, (root,), lambda i: (
            image_of(root, i), os.path.join(root, MASKS, f"{i}.png")))
    missing_folders([os.path.join(root, IMAGES), os.path.join(root, MASKS)], "Chest X-ray")
    return [(image_of(root, m), m) for m in sorted_images(os.path.join(root, MASKS), ".png")]


BENCHMARK = Benchmark(
    name="lung", title="Chest X-ray", num_classes=1, subset_classes=lambda subset: range(1, 2),
    class_of=lambda image, label: 1, pairs=pairs, layout=(IMAGES, MASKS), labels=BINARY,
    test_subset=TEST, only_test=True, fold_schemes=("patnet",), release_rule="patnet",
    release_seed=0, episodes=600, metric_size=400, reference_counts="lung_counts.json")
