"""Deepglobe (cross-domain, PATNet's protocol, Lei et al., ECCV 2022): satellite tiles, 6
land-cover classes, test only.

Layout (PATNet's loader; ``scripts/prepare_deepglobe.py`` writes it from the DeepGlobe
land-cover images): ``<class>/test/origin/<tile>.jpg`` and the tile's class mask
``<class>/test/groundtruth/<tile>.png`` (same stem; grey >= 128 is the class), classes
1..6 = agriculture, urban, rangeland, forest, water, barren. A tile holding several classes
is in several class folders. Test: 600 episodes, episode i of class ``i mod 6`` (100 each),
query and supports drawn by PATNet's rule (NumPy seed 0), scored at 400 x 400.
"""

from __future__ import annotations

import os

from fssam.data.benchmarks.base import (
    ALL,
    BINARY,
    TEST,
    Benchmark,
    Pairs,
    class_folder,
    missing_folders,
    pairs_from_list,
    sorted_images,
)

CLASSES = ("agriculture", "urban", "rangeland", "forest", "water", "barren")
# RGB colour of each class in the DeepGlobe land-cover masks (class i+1); unknown (black)
# is no class
COLOURS = ((255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (0, 0, 255),
           (255, 255, 255))


def pairs(root: str, subset: str, chosen) -> Pairs:
    """(tile, mask) of every class folder, classes in order, tiles in sorted name order."""
    if chosen.choice != ALL:
        return pairs_from_list(chosen.path, (root,), lambda i: (
            os.path.join(root, f"{i}.jpg"), os.path.join(root, f"{i}.png")))
    folders = [os.path.join(root, str(c), "test") for c in range(1, len(CLASSES) + 1)]
    missing_folders([os.path.join(f, "origin") for f in folders], "deepglobe class")
    out = []
    for folder in folders:
        for image in sorted_images(os.path.join(folder, "origin")):
            stem = os.path.splitext(os.path.basename(image))[0]
            out.append((image, os.path.join(folder, "groundtruth", f"{stem}.png")))
    return out


BENCHMARK = Benchmark(
    name="deepglobe", title="Deepglobe", num_classes=len(CLASSES),
    subset_classes=lambda subset: range(1, len(CLASSES) + 1),
    class_of=lambda image, label: class_folder(image, 3), pairs=pairs, layout=(),
    labels=BINARY, test_subset=TEST, only_test=True, fold_schemes=("patnet",),
    release_rule="patnet", release_seed=0, episodes=600, metric_size=400)
