"""What a benchmark is made of, in one place: ``Benchmark``.

A benchmark module (``fssam/data/benchmarks/<name>.py``) builds one ``Benchmark``: its
classes and folds, where its images and labels are, how a label is read, its default
lists, how many evaluation episodes its reference protocol scores and how, and its
reference counts. Lists, episodes, config checks, caches, the weight tables, the shell
scripts and the data checker read it from there (README: Adding a benchmark).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

# How a label is read (``fssam.data.sources``):
INDEX = "index"    # class-index PNG: 0 background, 1..C the class, 255 ignore
BINARY = "binary"  # one class per image (its folder); the mask is grey >= 128 foreground
LABEL_KINDS = (INDEX, BINARY)

TRAIN, VAL, TEST = "train", "val", "test"
# list choices (``dataset.train_list``; ``fssam.data.train_lists``)
AUTHORS, ALL, FILE = "authors", "all", "file"

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark. ``novel(fold, scheme)`` gives a fold's evaluation classes (1-based
    ids, ``fold_schemes[0]`` the default scheme); the base classes are the others.
    Benchmarks whose lists have classes of their own (FSS-1000's train/val/test classes)
    give ``subset_classes(subset)`` instead.

    ``pairs(root, subset, chosen)`` lists the (image, label) paths of a subset ("train",
    "val", or "test" when ``test_subset`` is "test") for the resolved list ``chosen``
    (``fssam.data.train_lists.TrainList``). ``class_of(image, label)`` gives the class of
    a pair of a ``BINARY`` benchmark. A benchmark whose folds depend on its data and on the
    shot (LVIS-92i) gives ``data_classes(root, subset, fold, shot, chosen)`` instead of
    ``novel``: ``classes`` then needs the root and the shot. ``release_rule`` names the
    episode rule of the reference protocol (``fssam.data.protocol.RELEASE_RULES``), scored
    on ``episodes`` episodes from ``release_seed``; ``metric_size`` is the side the
    reference scores at (None: the label's own size).
    """

    name: str
    title: str
    num_classes: int
    pairs: Callable[[str, str, Any], Pairs]
    layout: tuple[str, ...]
    num_folds: int = 1
    novel: Callable[[int, str], Sequence[int]] | None = None
    subset_classes: Callable[[str], Sequence[int]] | None = None
    class_of: Callable[[str, str], int] | None = None
    data_classes: Callable[..., Sequence[int]] | None = None
    list_files: tuple[str, ...] = ()  # files under the root that list the pairs (cache key)
    fold_schemes: tuple[str, ...] = ("contiguous",)
    labels: str = INDEX
    test_subset: str = VAL
    default_train_list: str = "all"
    authors_list: tuple[str, str] | None = None
    reference_counts: str | None = None
    release_rule: str = "fssam"
    release_seed: int = 321
    episodes: int = 1000
    metric_size: int | None = None
    hmnet_release: str | None = None
    only_test: bool = False
    all_classes_fold: bool = False  # fold ``num_folds`` trains on every class (PATNet's fold 4)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def subsets(self) -> tuple[str, ...]:
        """The lists a benchmark has: train and val, and test when test.py has its own;
        only test for a test-only benchmark (the cross-domain targets)."""
        if self.only_test:
            return (TEST,)
        return (TRAIN, VAL, TEST) if self.test_subset == TEST else (TRAIN, VAL)

    @property
    def max_fold(self) -> int:
        """The last fold: ``num_folds - 1``, or ``num_folds`` with an all-classes fold."""
        return self.num_folds - 1 + self.all_classes_fold

    def check_fold(self, fold: Any) -> int:
        if isinstance(fold, bool) or not isinstance(fold, Integral) or \
                not 0 <= fold <= self.max_fold:
            raise ValueError(f"unknown fold {fold!r} for {self.name} (expected an integer in "
                             f"0..{self.max_fold})")
        return int(fold)

    def check_scheme(self, scheme: str) -> str:
        """The fold scheme used: ``scheme`` when the benchmark has several, else its own."""
        if len(self.fold_schemes) == 1:
            return self.fold_schemes[0]
        if scheme not in self.fold_schemes:
            raise ValueError(f"unknown coco_folds {scheme!r} "
                             f"(expected one of {', '.join(self.fold_schemes)})")
        return scheme

    def check_subset(self, subset: str) -> str:
        if subset not in self.subsets:
            raise ValueError(f"unknown mode {subset!r} for {self.name} "
                             f"(expected one of {', '.join(self.subsets)})")
        return subset

    def novel_classes(self, fold: int, scheme: str, *, root: str | None = None,
                      shot: int | None = None) -> list[int]:
        """The classes a fold is evaluated on (validation and test)."""
        fold, scheme = self.check_fold(fold), self.check_scheme(scheme)
        if self.data_classes is not None:
            return self.classes(VAL, fold, scheme, root=root, shot=shot)
        if self.novel is None or fold == self.num_folds:
            return list(self.classes(VAL, fold, scheme))
        return list(self.novel(fold, scheme))

    def classes(self, subset: str, fold: int, scheme: str, *, root: str | None = None,
                shot: int | None = None, chosen: Any = None) -> list[int]:
        """The classes of a subset's list: base classes for "train", novel ones otherwise
        (or the subset's own classes). ``root``, ``shot`` and ``chosen`` (the subset's
        resolved list) matter only to a benchmark with ``data_classes``."""
        self.check_subset(subset)
        fold, scheme = self.check_fold(fold), self.check_scheme(scheme)
        if self.data_classes is not None:
            if root is None or shot is None:
                raise ValueError(f"{self.title}'s fold classes are computed from its lists "
                                 f"and depend on the shot: give the dataset root and the shot")
            return list(self.data_classes(root, subset, fold, shot, chosen))
        if self.subset_classes is not None:
            return list(self.subset_classes(subset))
        if fold == self.num_folds:  # the all-classes fold: nothing held out
            return list(range(1, self.num_classes + 1)) if subset == TRAIN else []
        novel = list(self.novel(fold, scheme))
        if subset != TRAIN:
            return novel
        excluded = set(novel)
        return [c for c in range(1, self.num_classes + 1) if c not in excluded]


def resolve(bases: Sequence[str], relative: str) -> str:
    """First of base/relative that exists, else the first candidate (errors name it)."""
    candidates = [os.path.join(base, relative) for base in bases]
    return next((c for c in candidates if os.path.exists(c)), candidates[0])


def pairs_from_list(list_file: str, bases: Sequence[str],
                    id_pair: Callable[[str], tuple[str, str]]) -> Pairs:
    """Pairs of a list file: ``image label`` paths, or an image id per line."""
    pairs = []
    for number, line in enumerate(read_lines(list_file), start=1):
        fields = line.split()
        if len(fields) == 1:
            pairs.append(id_pair(fields[0]))
        elif len(fields) == 2:
            pairs.append((resolve(bases, fields[0]), resolve(bases, fields[1])))
        else:
            raise ValueError(f"{list_file}:{number}: expected an image id or 'image label', "
                             f"got {line!r}")
    return pairs


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty stripped lines of a list file; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"empty list file: {path}")
    return lines


def sorted_images(folder: str, extension: str = ".jpg") -> list[str]:
    """The ``extension`` files of ``folder`` in sorted name order (FileNotFoundError naming
    the folder when it is missing)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder not found: {folder}")
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(extension)]


def class_folder(path: str, depth: int) -> int:
    """The class id a path names by the folder ``depth`` levels above the file (1: its
    parent); a ValueError names the path when that folder is not a number."""
    name = Path(path).parts[-1 - depth]
    if not name.isdigit():
        raise ValueError(f"{path}: folder {name!r} is not a class number")
    return int(name)


def missing_folders(folders: Sequence[str], what: str) -> None:
    """FileNotFoundError naming the missing ones among ``folders``."""
    missing = [f for f in folders if not os.path.isdir(f)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(folders)} {what} folders missing: "
                                f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
