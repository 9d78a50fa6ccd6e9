"""The classes of each fold of PASCAL-5i and COCO-20i (class ids are 1-based).

PASCAL-5i fold i: novel classes 5i+1..5i+5. COCO-20i fold i: interleaved
{4k+i+1 : k = 0..19} (the authors' default) or contiguous 20i+1..20i+20.
The other classes of the dataset are the base classes of the fold.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

NUM_FOLDS = 4

_NUM_CLASSES = {"pascal": 20, "coco": 80}

# fold scheme -> (fold, classes per fold) -> novel classes
_FOLD_RULES: dict[str, Callable[[int, int], range]] = {
    "contiguous": lambda fold, per_fold: range(per_fold * fold + 1, per_fold * (fold + 1) + 1),
    "interleaved": lambda fold, per_fold: range(fold + 1, NUM_FOLDS * per_fold + 1, NUM_FOLDS),
}

# PASCAL-5i only exists with contiguous folds; COCO-20i follows `coco_folds`.
_FIXED_FOLDS = {"pascal": "contiguous"}

COCO_FOLDS = tuple(sorted(_FOLD_RULES))
DATASETS = tuple(_NUM_CLASSES)


def num_classes(dataset: str) -> int:
    """Number of foreground classes of `dataset` ("pascal" 20, "coco" 80)."""
    if dataset not in _NUM_CLASSES:
        raise ValueError(f"unknown dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    return _NUM_CLASSES[dataset]


def novel_classes(dataset: str, fold: int, coco_folds: str = "interleaved") -> list[int]:
    """Novel (evaluation) classes of `fold`; `coco_folds` only matters for COCO."""
    total = num_classes(dataset)
    if isinstance(fold, bool) or not isinstance(fold, Integral) or not 0 <= fold < NUM_FOLDS:
        raise ValueError(f"unknown fold {fold!r} (expected an integer in 0..{NUM_FOLDS - 1})")
    if coco_folds not in _FOLD_RULES:
        raise ValueError(f"unknown coco_folds {coco_folds!r} "
                         f"(expected one of {', '.join(COCO_FOLDS)})")
    rule = _FOLD_RULES[_FIXED_FOLDS.get(dataset, coco_folds)]
    return list(rule(int(fold), total // NUM_FOLDS))


def base_classes(dataset: str, fold: int, coco_folds: str = "interleaved") -> list[int]:
    """Base (training) classes of `fold`: every class that is not novel."""
    novel = set(novel_classes(dataset, fold, coco_folds))
    return [c for c in range(1, num_classes(dataset) + 1) if c not in novel]


def fold_classes(dataset: str, mode: str, fold: int, coco_folds: str = "interleaved"
                  ) -> list[int]:
    """The classes of a `mode` list: base classes for "train", novel ones for evaluation."""
    return (base_classes if mode == "train" else novel_classes)(dataset, fold, coco_folds)
