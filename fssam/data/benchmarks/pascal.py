"""PASCAL-5i: VOC2012 + SBD, 20 classes in 4 folds of 5 (fold i: novel classes 5i+1..5i+5).

Root: ``VOC2012/JPEGImages/<id>.jpg``, ``VOC2012/ImageSets/Segmentation/val.txt`` (the
evaluation images, 1449) and ``SegmentationClassAug/<id>.png`` class-index labels (at the
root or under ``VOC2012/``). Training images: the authors' 5953 (shipped list, default),
every label not in val.txt ("all", 10582) or a list file.
"""

from __future__ import annotations

import os

from fssam.data.benchmarks.base import (ALL, TRAIN, VAL, Benchmark, Pairs, pairs_from_list,
                                        read_lines, resolve)

NUM_CLASSES = 20
NUM_FOLDS = 4


def novel(fold: int, scheme: str) -> range:
    """Fold i: classes 5i+1..5i+5."""
    per_fold = NUM_CLASSES // NUM_FOLDS
    return range(per_fold * fold + 1, per_fold * (fold + 1) + 1)


def pairs(root: str, subset: str, chosen) -> Pairs:
    """(image, label) paths of the ``subset`` list."""
    voc = os.path.join(root, "VOC2012")
    label_dir = resolve((root, voc), "SegmentationClassAug")

    def id_pair(i: str) -> tuple[str, str]:
        return os.path.join(voc, "JPEGImages", f"{i}.jpg"), os.path.join(label_dir, f"{i}.png")

    if chosen.choice != ALL:
        return pairs_from_list(chosen.path, (root, voc), id_pair)
    if not os.path.isdir(label_dir):
        raise FileNotFoundError(f"label folder not found: {label_dir} (nor under {voc})")
    val_ids = read_lines(os.path.join(voc, "ImageSets", "Segmentation", "val.txt"))
    if subset == VAL:
        ids = val_ids
    else:
        assert subset == TRAIN
        excluded = set(val_ids)
        stems = (name[:-4] for name in os.listdir(label_dir) if name.endswith(".png"))
        ids = sorted(stem for stem in stems if stem not in excluded)
    return [id_pair(i) for i in ids]


BENCHMARK = Benchmark(
    name="pascal", title="PASCAL-5i", num_classes=NUM_CLASSES, num_folds=NUM_FOLDS,
    novel=novel, pairs=pairs,
    layout=("VOC2012/JPEGImages", "VOC2012/ImageSets/Segmentation/val.txt"),
    default_train_list="authors",
    authors_list=("pascal_train_voc_sbd.txt",
                  "edb3f0cbd581ed65fcb3050ff172c52e6c28ea94ae0797725084a3526721249b"),
    reference_counts="pascal_fold_counts.json", hmnet_release="HMNet", all_classes_fold=True)
