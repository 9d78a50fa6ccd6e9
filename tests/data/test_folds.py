"""Fold -> class splits of PASCAL-5i and COCO-20i."""

import pytest

from fssam.data.folds import base_classes, novel_classes, num_classes, num_folds


def test_num_classes() -> None:
    assert num_classes("pascal") == 20
    assert num_classes("coco") == 80


@pytest.mark.parametrize("fold", range(4))
def test_pascal_fold_is_five_contiguous_classes(fold: int) -> None:
    assert novel_classes("pascal", fold) == [5 * fold + k for k in range(1, 6)]


def test_pascal_ignores_coco_folds() -> None:
    assert novel_classes("pascal", 2, "interleaved") == novel_classes("pascal", 2, "contiguous")


def test_coco_interleaved_is_default() -> None:
    assert novel_classes("coco", 0) == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57,
                                        61, 65, 69, 73, 77]
    assert novel_classes("coco", 3) == list(range(4, 81, 4))


def test_coco_contiguous() -> None:
    assert novel_classes("coco", 0, "contiguous") == list(range(1, 21))
    assert novel_classes("coco", 3, "contiguous") == list(range(61, 81))


@pytest.mark.parametrize(("dataset", "split"), [("pascal", "contiguous"),
                                               ("coco", "interleaved"), ("coco", "contiguous")])
def test_folds_partition_the_classes(dataset: str, split: str) -> None:
    every = list(range(1, num_classes(dataset) + 1))
    novel = [novel_classes(dataset, f, split) for f in range(num_folds(dataset))]
    assert sorted(c for fold in novel for c in fold) == every
    for fold in range(num_folds(dataset)):
        base = base_classes(dataset, fold, split)
        assert len(novel[fold]) == num_classes(dataset) // num_folds(dataset)
        assert not set(base) & set(novel[fold])
        assert sorted(base + novel[fold]) == every
