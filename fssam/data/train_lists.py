"""Which images a fold trains on: the authors' list, every label, or a list file.

``train_list`` (``dataset.train_list`` in the configs) takes one of:

- ``"authors"``: the authors' PASCAL-5i training images (VOC2012 ``train`` ∪ SBD training
  images, duplicates and VOC2012 ``val`` removed: 5953 ids), shipped in
  ``fssam/data/lists/pascal_train_voc_sbd.txt``. The default for PASCAL.
- ``"all"``: every training label found on disk (PASCAL: each ``SegmentationClassAug``
  label not in ``val.txt``, 10582 images with the real data; COCO: each
  ``annotations/train2014`` label, the authors' COCO setting). The default for COCO.
- a path to a list file: one entry per line, either an image id (``2008_000008``, found
  in the dataset's layout) or an ``image label`` pair of paths relative to the root.

``None`` means the dataset's default (``DEFAULT_TRAIN_LIST``).

The evaluation list (``dataset.val_list``) is ``"standard"`` (VOC2012 ``val.txt``; every
``annotations/val2014`` label in name order for COCO) or a list file of the same format,
whose order is kept: the releases walk their evaluation list in its order, so the order
decides their episodes (the authors' COCO list, ``lists/coco/val.txt`` of their
repository, is not in name order).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fssam.data.benchmarks import BENCHMARKS
from fssam.data.benchmarks.base import ALL, AUTHORS, FILE, read_lines

LIST_DIR = Path(__file__).resolve().parent / "lists"
CHOICES = (AUTHORS, ALL)
STANDARD = "standard"
# read from each benchmark's description (fssam.data.benchmarks)
DEFAULT_TRAIN_LIST = {b.name: b.default_train_list for b in BENCHMARKS.values()}
# dataset -> (shipped file, SHA-256 of its bytes)
AUTHORS_LISTS = {b.name: b.authors_list for b in BENCHMARKS.values() if b.authors_list}
REFERENCE_COUNTS = {b.name: b.reference_counts for b in BENCHMARKS.values()
                    if b.reference_counts}


@dataclass(frozen=True)
class TrainList:
    """A resolved choice: ``choice`` is "authors", "all" or "file"; ``path`` the list file
    read (None for "all") and ``sha256`` the hash of its non-empty lines."""

    choice: str
    path: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        """``authors (5953 ids in ...)``-style one-line description."""
        if self.choice == ALL:
            return "all (every training label on disk)"
        count = len(read_lines(self.path))
        kind = "the authors' list" if self.choice == AUTHORS else "list file"
        return f"{self.choice}: {kind} {self.path} ({count} entries)"


def lines_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the non-empty lines joined by newlines (blank lines do not count)."""
    return hashlib.sha256("\n".join(read_lines(path)).encode()).hexdigest()


def authors_list_path(dataset: str) -> Path:
    """The shipped authors' list of ``dataset``, checked against its recorded SHA-256."""
    if dataset not in AUTHORS_LISTS:
        raise ValueError(f"train_list={AUTHORS!r}: the authors' training list ships for "
                         f"{', '.join(AUTHORS_LISTS)} only; for {dataset} use {ALL!r} or a "
                         f"list file")
    name, expected = AUTHORS_LISTS[dataset]
    path = LIST_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"the package's list file is missing: {path}")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise ValueError(f"{path} has SHA-256 {actual}, expected {expected}: the shipped "
                         f"list was changed; reinstall the package")
    return path


def resolve_train_list(dataset: str, train_list: str | os.PathLike | None) -> TrainList:
    """The choice behind ``train_list`` for ``dataset`` (a benchmark's name)."""
    if dataset not in DEFAULT_TRAIN_LIST:
        raise ValueError(f"unknown dataset {dataset!r} "
                         f"(expected one of {', '.join(DEFAULT_TRAIN_LIST)})")
    choice = DEFAULT_TRAIN_LIST[dataset] if train_list is None else str(train_list)
    if choice == ALL:
        return TrainList(ALL)
    if choice == AUTHORS:
        path = str(authors_list_path(dataset))
        return TrainList(AUTHORS, path, lines_sha256(path))
    if not choice.strip():
        raise ValueError(f"train_list={choice!r}: expected {AUTHORS!r}, {ALL!r} or a list file")
    path = os.path.abspath(choice)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {choice} (train_list takes "
                                f"{AUTHORS!r}, {ALL!r} or the path of a list file)")
    return TrainList(FILE, path, lines_sha256(path))


def resolve_val_list(val_list: str | os.PathLike | None) -> TrainList:
    """The evaluation list behind ``val_list``: "standard" (or None) or a list file."""
    if val_list is None or str(val_list) == STANDARD:
        return TrainList(ALL)
    choice = str(val_list)
    path = os.path.abspath(choice)
    if not choice.strip() or not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {choice!r} (val_list takes "
                                f"{STANDARD!r} or the path of a list file)")
    return TrainList(FILE, path, lines_sha256(path))


def reference_counts_path(dataset: str) -> Path:
    """The shipped per-fold counts of the authors' list builder for ``dataset``."""
    if dataset not in REFERENCE_COUNTS:
        raise ValueError(f"no reference counts for dataset {dataset!r}")
    return LIST_DIR / REFERENCE_COUNTS[dataset]
