"""LVIS-92i under Matcher's protocol (Liu et al., ICLR 2024; SANSA tests it the same way).

LVIS v1 (1203 categories, ids 1..1203 in the json) on the COCO 2017 images. Root: the
``LVIS`` folder with the images under ``coco/{train2017,val2017}`` (Matcher's layout) and
what ``scripts/prepare_lvis.py`` writes from the LVIS v1 json (or from the pickles Matcher
and SANSA distribute):

- ``masks/{train,val}/<category id>/<image stem>.png``: the union of the category's
  instances in the image (0 background, 255 object; read as grey >= 128);
- ``lvis92i_{train,val}.txt``: one line per (category, image), ``<image> <mask>`` relative
  to the root, category after category. The order of the lines is part of the protocol:
  the categories in the order of the list, each category's images in the order of its
  lines.

Folds (Matcher's rule, the same for training and evaluation): the *eligible* categories
are those of the val list with more than ``shot`` images, in list order; fold f evaluates
eligible categories f, f+10, f+20, ... (``n // 10`` of them, n eligible; about 92 each at
one shot, hence the name). Training uses the categories of the train list with more than
``shot`` images (SANSA's rule; an episode needs ``shot`` supports besides its query) that
are not evaluated in the fold. So the folds depend on the data and on the shot: they are
computed from the lists (``data_classes``), never from a table.

Test: 2300 episodes; episode i takes the fold's category ``i mod C`` (fold order), then the
query and each support, one NumPy legacy draw each among the category's images (seed 0
once, a support equal to the query drawn again, repeats kept: rule "matcher"); masks are
compared at 518 x 518, the size Matcher resizes its query masks to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fssam.data.benchmarks.base import (ALL, BINARY, TRAIN, VAL, Benchmark, Pairs,
                                        class_folder, pairs_from_list, read_lines)

NUM_CATEGORIES = 1203
NUM_FOLDS = 10
EPISODES = 2300
METRIC_SIZE = 518
IMAGE_DIR = "coco"
MASK_DIR = "masks"
LIST_FILES = {TRAIN: "lvis92i_train.txt", VAL: "lvis92i_val.txt"}
CATEGORY_FILE = "lvis92i_categories.txt"  # "<id> <name>" per line


def list_path(root: str, subset: str) -> str:
    """The list file of a subset under ``root``."""
    return os.path.join(root, LIST_FILES[subset])


def class_of(image: str, label: str) -> int:
    """The category of a pair: the folder of its mask (``masks/<split>/<id>/<stem>.png``)."""
    category = class_folder(label, 1)
    if not 1 <= category <= NUM_CATEGORIES:
        raise ValueError(f"{label}: category {category} is outside LVIS v1's 1..{NUM_CATEGORIES}")
    return category


def pairs(root: str, subset: str, chosen=None) -> Pairs:
    """(image, mask) paths of a subset: its list under ``root`` (``chosen`` None or "all"),
    or a list file of ``image mask`` lines (relative to the root or absolute) in the same
    format."""
    own = chosen is None or chosen.choice == ALL
    path = list_path(root, subset) if own else chosen.path
    return pairs_from_list(path, (root,), lambda i: _no_ids(path, i))


def _no_ids(path: str, entry: str) -> tuple[str, str]:
    raise ValueError(f"{path}: LVIS-92i list lines are 'image mask' (relative to the dataset "
                     f"root), got {entry!r}")


def category_images(list_pairs: Sequence[tuple[str, str]]) -> dict[int, int]:
    """Category -> number of its images, in the order of first appearance in the list."""
    counts: dict[int, int] = {}
    for image, label in list_pairs:
        category = class_of(image, label)
        counts[category] = counts.get(category, 0) + 1
    return counts


def eligible(counts: dict[int, int], shot: int) -> list[int]:
    """The categories with more than ``shot`` images, in list order (Matcher's filter)."""
    return [c for c, n in counts.items() if n > shot]


def fold_of(val_counts: dict[int, int], fold: int, shot: int) -> list[int]:
    """The evaluation categories of ``fold``: eligible ones ``fold + 10 v``, v < n // 10."""
    ranked = eligible(val_counts, shot)
    per_fold = len(ranked) // NUM_FOLDS
    if per_fold == 0:
        raise ValueError(f"LVIS-92i needs at least {NUM_FOLDS} val categories with more than "
                         f"{shot} images for its folds, the val list has {len(ranked)}")
    return [ranked[fold + NUM_FOLDS * v] for v in range(per_fold)]


def data_classes(root: str, subset: str, fold: int, shot: int, chosen=None) -> list[int]:
    """The categories of a subset's list for ``fold`` and ``shot``, computed from the lists
    under ``root`` (the val list decides the folds; ``chosen``: the subset's resolved list,
    whose categories a training list draws from)."""
    novel = fold_of(category_images(pairs(root, VAL)), fold, shot)
    if subset != TRAIN:
        return novel
    held_out = set(novel)
    return [c for c in eligible(category_images(pairs(root, TRAIN, chosen)), shot)
            if c not in held_out]


def read_category_names(root: str) -> dict[int, str]:
    """Category id -> name from ``CATEGORY_FILE`` (``<id> <name>`` lines), written by the
    preparation; empty when the file is absent."""
    path = os.path.join(root, CATEGORY_FILE)
    if not os.path.isfile(path):
        return {}
    names = {}
    for line in read_lines(path):
        number, _, name = line.partition(" ")
        names[int(number)] = name
    return names


BENCHMARK = Benchmark(
    name="lvis", title="LVIS-92i", num_classes=NUM_CATEGORIES, num_folds=NUM_FOLDS,
    pairs=pairs, class_of=class_of, data_classes=data_classes,
    list_files=tuple(LIST_FILES.values()),
    layout=(f"{IMAGE_DIR}", f"{MASK_DIR}/train", f"{MASK_DIR}/val"), labels=BINARY,
    release_rule="matcher", release_seed=0, episodes=EPISODES, metric_size=METRIC_SIZE)
