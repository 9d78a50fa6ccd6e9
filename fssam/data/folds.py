"""The classes of each fold of a benchmark (class ids are 1-based), read from its
description in ``fssam.data.benchmarks``.

PASCAL-5i fold i: novel classes 5i+1..5i+5. COCO-20i fold i: interleaved
{4k+i+1 : k = 0..19} (the authors' default) or contiguous 20i+1..20i+20. The other classes
of the dataset are the base classes of the fold. FSS-1000 has one fold whose training,
validation and test lists have classes of their own. LVIS-92i's 10 folds are computed
from its lists and depend on the shot (``fssam.data.benchmarks.lvis``).
"""

from __future__ import annotations

from fssam.data import benchmarks
from fssam.data.benchmarks import coco

NUM_FOLDS = max(b.num_folds for b in benchmarks.BENCHMARKS.values())
COCO_FOLDS = tuple(sorted(coco.BENCHMARK.fold_schemes))
DATASETS = benchmarks.NAMES


def num_classes(dataset: str) -> int:
    """Number of foreground classes of `dataset` ("pascal" 20, "coco" 80, ...)."""
    return benchmarks.get(dataset).num_classes


def num_folds(dataset: str) -> int:
    """Folds of `dataset` (4 for PASCAL-5i and COCO-20i, 1 for FSS-1000)."""
    return benchmarks.get(dataset).num_folds


def novel_classes(dataset: str, fold: int, coco_folds: str = "interleaved", *,
                  root: str | None = None, shot: int | None = None) -> list[int]:
    """Novel (evaluation) classes of `fold`; `coco_folds` only matters for COCO, `root` and
    `shot` only for LVIS-92i (its folds are computed from its lists)."""
    return benchmarks.get(dataset).novel_classes(fold, coco_folds, root=root, shot=shot)


def base_classes(dataset: str, fold: int, coco_folds: str = "interleaved") -> list[int]:
    """Base (training) classes of `fold`."""
    return benchmarks.get(dataset).classes("train", fold, coco_folds)


def fold_classes(dataset: str, mode: str, fold: int, coco_folds: str = "interleaved", *,
                 root: str | None = None, shot: int | None = None, chosen=None) -> list[int]:
    """The classes of a `mode` list ("train", "val" or, where the benchmark has one,
    "test"): base classes for "train", novel (evaluation) ones otherwise. LVIS-92i needs
    the dataset `root` and the `shot` (and `chosen`, the resolved training list)."""
    return benchmarks.get(dataset).classes(mode, fold, coco_folds, root=root, shot=shot,
                                           chosen=chosen)
