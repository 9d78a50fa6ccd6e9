"""FSS-1000 under HSNet's protocol (Min et al., ICCV 2021), as Matcher and PATNet also test it.

1000 classes, one folder each: ``<class>/<n>.jpg`` with the mask ``<class>/<n>.png``
(same stem; grey value >= 128 is the object), ten images per class (``1.jpg``..``10.jpg``).
The root is the ``FSS-1000`` folder holding the class folders (HSNet's layout) or a
``data/`` folder of them (Matcher's and SANSA's). Only ``.jpg`` files are images (the
archive's few ``.jpeg`` extras are skipped, as HSNet skips them).

HSNet's split: 520 training, 240 validation and 240 test classes (only the test classes
are FSS-1000's own; the 520/240 split is HSNet's), shipped as ``fss1000_{trn,val,test}.txt``
in ``fssam/data/lists``. The class order is the sorted class names; our class id is
HSNet's plus one: training 1..520, validation 521..760, test 761..1000.

Test: every test image is the query of one episode (240 x 10 = 2400, classes in sorted
order, images in sorted file-name order), supports drawn among the class's ``1..10.jpg``
by HSNet's rule (``fssam.data.protocol``, rule "hsnet", NumPy seed 0); masks are
compared at 400 x 400, the size HSNet resizes them to.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from fssam.data.benchmarks.base import (ALL, BINARY, TEST, TRAIN, VAL, Benchmark, Pairs,
                                        pairs_from_list, read_lines)

LIST_DIR = Path(__file__).resolve().parents[1] / "lists"
SPLIT_FILES = {TRAIN: "fss1000_trn.txt", VAL: "fss1000_val.txt", TEST: "fss1000_test.txt"}
SPLIT_SIZES = {TRAIN: 520, VAL: 240, TEST: 240}
IMAGES_PER_CLASS = 10
METRIC_SIZE = 400


@cache
def class_names(subset: str) -> tuple[str, ...]:
    """The sorted class names of a split (HSNet sorts its split file)."""
    path = LIST_DIR / SPLIT_FILES[subset]
    names = sorted(set(read_lines(path)))
    if len(names) != SPLIT_SIZES[subset]:
        raise ValueError(f"{path} lists {len(names)} distinct classes, expected "
                         f"{SPLIT_SIZES[subset]}: the package's list was changed; reinstall it")
    return tuple(names)


def first_id(subset: str) -> int:
    """Our id of the split's first class (1, 521, 761)."""
    order = (TRAIN, VAL, TEST)
    return 1 + sum(SPLIT_SIZES[s] for s in order[:order.index(subset)])


def subset_classes(subset: str) -> range:
    return range(first_id(subset), first_id(subset) + SPLIT_SIZES[subset])


@cache
def class_ids() -> dict[str, int]:
    """Class name -> our id, over the three splits."""
    return {name: first_id(s) + i for s in SPLIT_FILES for i, name in enumerate(class_names(s))}


def class_of(image: str, label: str) -> int:
    """The class of an image: its folder's name."""
    name = os.path.basename(os.path.dirname(image))
    if name not in class_ids():
        raise ValueError(f"{image}: folder {name!r} is no FSS-1000 class of HSNet's split")
    return class_ids()[name]


def data_dir(root: str) -> str:
    """The folder holding the class folders: ``root`` or ``root/data``."""
    inner = os.path.join(root, "data")
    probe = class_names(TEST)[0]
    if not os.path.isdir(os.path.join(root, probe)) and os.path.isdir(inner):
        return inner
    return root


def class_pairs(folder: str) -> Pairs:
    """(image, mask) of every ``.jpg`` of a class folder, in sorted file-name order."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"class folder not found: {folder}")
    images = sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
    return [(os.path.join(folder, n), os.path.join(folder, n[:-4] + ".png")) for n in images]


def pairs(root: str, subset: str, chosen) -> Pairs:
    """(image, mask) paths of a split: its classes in sorted order, or a list file's
    entries (``<class>/<n>`` or ``image mask`` per line)."""
    base = data_dir(root)
    if chosen.choice != ALL:
        return pairs_from_list(chosen.path, (base, root), lambda i: (
            os.path.join(base, f"{i}.jpg"), os.path.join(base, f"{i}.png")))
    missing = [n for n in class_names(subset) if not os.path.isdir(os.path.join(base, n))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(class_names(subset))} {subset} class "
                                f"folders missing under {base}: {', '.join(missing[:5])}"
                                f"{', ...' if len(missing) > 5 else ''}")
    return [p for name in class_names(subset) for p in class_pairs(os.path.join(base, name))]


BENCHMARK = Benchmark(
    name="fss1000", title="FSS-1000", num_classes=1000, subset_classes=subset_classes,
    class_of=class_of, pairs=pairs, layout=(), labels=BINARY, test_subset=TEST,
    fold_schemes=("hsnet",), release_rule="hsnet", release_seed=0,
    episodes=len(class_names(TEST)) * IMAGES_PER_CLASS, metric_size=METRIC_SIZE,
    reference_counts="fss1000_counts.json")
