"""COCO-20i: COCO 2014, 80 classes in 4 folds of 20.

Fold i: {4k+i+1 : k = 0..19} ("interleaved", the authors' default) or 20i+1..20i+20
("contiguous"). Root: ``{train2014,val2014}/<name>.jpg`` and class-index labels
``annotations/{train2014,val2014}/<name>.png`` (``scripts/prepare_coco.py``). Training
images: every train2014 label (default) or a list file; evaluation: every val2014 label in
name order, or a list file whose order is kept.
"""

from __future__ import annotations

import os

from fssam.data.benchmarks.base import ALL, TRAIN, Benchmark, Pairs, pairs_from_list

NUM_CLASSES = 80
NUM_FOLDS = 4
FOLD_RULES = {
    "contiguous": lambda fold, per_fold: range(per_fold * fold + 1, per_fold * (fold + 1) + 1),
    "interleaved": lambda fold, per_fold: range(fold + 1, NUM_FOLDS * per_fold + 1, NUM_FOLDS),
}


def novel(fold: int, scheme: str) -> range:
    return FOLD_RULES[scheme](fold, NUM_CLASSES // NUM_FOLDS)


def pairs(root: str, subset: str, chosen) -> Pairs:
    """(image, label) paths of the ``subset`` list."""
    folder = "train2014" if subset == TRAIN else "val2014"
    label_dir = os.path.join(root, "annotations", folder)

    def id_pair(stem: str) -> tuple[str, str]:
        return os.path.join(root, folder, f"{stem}.jpg"), os.path.join(label_dir, f"{stem}.png")

    if chosen.choice != ALL:
        return pairs_from_list(chosen.path, (root,), id_pair)
    if not os.path.isdir(label_dir):
        raise FileNotFoundError(f"label folder not found: {label_dir}")
    stems = sorted(name[:-4] for name in os.listdir(label_dir) if name.endswith(".png"))
    return [id_pair(s) for s in stems]


BENCHMARK = Benchmark(
    name="coco", title="COCO-20i", num_classes=NUM_CLASSES, num_folds=NUM_FOLDS,
    novel=novel, pairs=pairs, fold_schemes=("interleaved", "contiguous"),
    layout=("train2014", "val2014", "annotations/train2014", "annotations/val2014"),
    reference_counts="coco_fold_counts.json", hmnet_release="HMNetAMP")
