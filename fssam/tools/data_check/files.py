"""Checks of a dataset's files before any list is built: layout, then every label.

Layout: the folders of the dataset's layout (``fssam.data.sources``) and, for every
training and evaluation pair, that its image and label exist. Files: empty ones; images
that training cannot read (decoded as training decodes them, JPEGs cut short included:
``fssam.data.bad_files``); single-channel 8-bit class-index PNG labels (colour/RGB labels,
other modes, values outside 0..C and 255, and labels whose size differs from their image
are reported). Each kind of problem is one ``Finding`` with its count and the first few
files: one pass finds every bad file training or testing would stop on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fssam.contract import IGNORE_LABEL
from fssam.data import benchmarks
from fssam.data.bad_files import jpeg_truncated
from fssam.data.benchmarks import BINARY
from fssam.data.sources import list_pairs, read_image
from fssam.data.train_lists import TrainList

# kind -> what it means (every kind makes the check fail)
KINDS = {
    "missing_folder": "folders or files of the layout missing",
    "missing_image": "listed images missing",
    "missing_label": "listed labels missing",
    "empty_file": "empty files (0 bytes)",
    "truncated_image": "images cut short (JPEGs without their end marker)",
    "unreadable_image": "images that cannot be read",
    "unreadable_label": "labels that cannot be read",
    "rgb_label": "colour (RGB) labels, not single-channel class-index PNGs",
    "label_mode": "labels that are not 8-bit single-channel PNGs (mode L or P)",
    "out_of_range": "labels with values outside 0..{C} and 255",
    "size_mismatch": "labels whose size differs from their image's",
}


@dataclass
class Finding:
    """One kind of problem: how many files have it and the first few of them."""

    kind: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str, keep: int) -> None:
        self.count += 1
        if len(self.examples) < keep:
            self.examples.append(example)

    def describe(self, num_classes: int) -> str:
        what = KINDS[self.kind].format(C=num_classes)
        return f"{self.count} {what}: {', '.join(self.examples)}" + \
            (", ..." if self.count > len(self.examples) else "")


class Findings(dict):
    """kind -> Finding, in the order first seen."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.keep = keep

    def add(self, kind: str, example: str) -> None:
        self.setdefault(kind, Finding(kind)).add(example, self.keep)

    def merge(self, other: Findings) -> None:
        for kind, finding in other.items():
            mine = self.setdefault(kind, Finding(kind))
            mine.count += finding.count
            mine.examples = (mine.examples + finding.examples)[:self.keep]


def _relative(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel


def _expected_paths(dataset: str, root: str) -> list[str]:
    """Layout entries that are missing (``Benchmark.layout``; PASCAL labels may sit at the
    root or in VOC2012/)."""
    missing = [p for p in benchmarks.get(dataset).layout
               if not os.path.exists(os.path.join(root, p))]
    if dataset == "pascal" and not any(
            os.path.isdir(os.path.join(root, p, "SegmentationClassAug")) for p in ("", "VOC2012")):
        missing.append("SegmentationClassAug (at the root or in VOC2012/)")
    return missing


def check_layout(dataset: str, root: str, train_list: TrainList, keep: int = 5
                 ) -> tuple[Findings, dict[str, list[tuple[str, str]]]]:
    """Layout findings and the (image, label) pairs of each mode whose files all exist."""
    findings = Findings(keep)
    for entry in _expected_paths(dataset, root):
        findings.add("missing_folder", entry)
    present: dict[str, list[tuple[str, str]]] = {}
    for mode in benchmarks.get(dataset).subsets:
        try:
            pairs = list_pairs(dataset=dataset, root=root, mode=mode, train_list=train_list)
        except (FileNotFoundError, ValueError) as err:
            findings.add("missing_folder", f"{mode} list: {err}")
            continue
        kept = []
        for image, label in pairs:
            ok = True
            for kind, path in (("missing_image", image), ("missing_label", label)):
                if not os.path.isfile(path):
                    findings.add(kind, _relative(path, root))
                    ok = False
            if ok:
                kept.append((image, label))
        present[mode] = kept
    return findings, present


def inspect_pair(pair: tuple[str, str], max_class: int, labels: str = "index"
                 ) -> list[tuple[str, str]]:
    """``(kind, file and detail)`` of every problem of one image/label pair. A one-class
    mask (``labels`` "binary") only has to be readable: any mode is read as grey, and a
    size that differs from its image's is resized on reading (``read_binary_mask``)."""
    image, label = pair
    empty = [("empty_file", path) for path in pair if os.path.getsize(path) == 0]
    if empty:
        return empty
    try:
        with Image.open(label) as handle:
            mode, size = handle.mode, handle.size
            array = np.asarray(handle.convert("L") if labels == BINARY else handle)
    except (OSError, SyntaxError, ValueError) as err:
        return [("unreadable_label", f"{label} ({err})")]
    problems = []
    if labels == BINARY:
        size = None
    elif mode in ("RGB", "RGBA"):
        grey = bool((array[..., 0] == array[..., 1]).all() and
                    (array[..., 1] == array[..., 2]).all())
        what = "grey values in 3 channels" if grey else "colours"
        problems.append(("rgb_label", f"{label} (mode {mode}, {what})"))
    elif mode not in ("L", "P"):
        problems.append(("label_mode", f"{label} (mode {mode})"))
    else:
        values = np.flatnonzero(np.bincount(array.ravel(), minlength=256))
        bad = [int(v) for v in values if v > max_class and v != IGNORE_LABEL]
        if bad:
            problems.append(("out_of_range", f"{label} (values {bad[:6]})"))
    if jpeg_truncated(image):
        return problems + [("truncated_image", image)]
    try:
        height, width = read_image(image).shape[:2]
    except (OSError, ValueError) as err:
        return problems + [("unreadable_image", f"{image} ({err})")]
    image_size = (width, height)
    if size is not None and image_size != size:
        problems.append(("size_mismatch", f"{label} is {size[0]}x{size[1]}, its image "
                                          f"{image_size[0]}x{image_size[1]}"))
    return problems


def check_labels(pairs: Sequence[tuple[str, str]], root: str, max_class: int, workers: int = 8,
                 keep: int = 5, labels: str = "index") -> Findings:
    """Label findings over ``pairs`` (each label once), with a progress bar."""
    unique = list(dict.fromkeys(pairs))
    findings = Findings(keep)
    inspect = partial(inspect_pair, max_class=max_class, labels=labels)
    with ThreadPool(max(1, workers)) as pool:
        results = tqdm(pool.imap(inspect, unique, chunksize=32), total=len(unique),
                       desc="labels", unit="label", leave=False)
        for problems in results:
            for kind, detail in problems:
                findings.add(kind, _relative_detail(detail, root))
    return findings


def _relative_detail(detail: str, root: str) -> str:
    """File paths under ``root`` shortened to the part below it."""
    prefix = str(Path(root).resolve()) + os.sep
    return detail.replace(prefix, "").replace(os.path.join(root, ""), "")
