"""Every fold's lists built by the project's list builder, counted and compared with the
authors' reference counts (``fssam/data/lists/*_fold_counts.json``).

Counts and references share one format: ``{"train_fold0": {"images": n, "per_class":
{"6": n, ...}}, "val_fold0": ...}``; a reference may lack lists or their per-class counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fssam.data import benchmarks
from fssam.data.folds import fold_classes
from fssam.data.sources import EmptyListError, build_image_list, class_index
from fssam.data.train_lists import TrainList

Counts = dict[str, dict[str, Any]]
MAX_CLASS_ROWS = 100  # longer lists print only their differing classes


@dataclass(frozen=True)
class Comparison:
    """One count of one list, ours against the reference."""

    list: str
    row: str
    ours: int
    reference: int

    @property
    def match(self) -> bool:
        return self.ours == self.reference

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "match": self.match}


def list_name(mode: str, fold: int) -> str:
    return f"{mode}_fold{fold}"


def load_reference(path: str | os.PathLike) -> Counts:
    """A reference-counts JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference counts not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"reference counts {path} are not JSON: {err}") from err
    if not isinstance(data, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("images"), int) for v in data.values()):
        raise ValueError(f"reference counts {path}: expected {{list: {{'images': n, "
                         f"'per_class': {{class: n}}}}}}")
    return data


def build_counts(*, dataset: str, root: str, folds: Sequence[int], train_list: TrainList,
                 coco_folds: str, cache_dir: str | None, workers: int,
                 rebuild: bool = True, shot: int = 1) -> Counts:
    """Images and per-class eligible images of every fold's lists (or the build's error).

    ``rebuild``: read every label again and refresh the list cache (a cached list does not
    see files changed in place); False reuses cached lists. ``shot``: the shot the lists are
    built for (only LVIS-92i's folds depend on it)."""
    counts: Counts = {}
    label_counts: dict[str, dict[int, int]] = {}  # every label read once for all folds
    jobs = [(mode, fold) for fold in folds for mode in benchmarks.get(dataset).subsets]
    for mode, fold in tqdm(jobs, desc="lists", unit="list"):
        try:
            classes = fold_classes(dataset, mode, fold, coco_folds, root=root, shot=shot,
                                   chosen=train_list if mode == "train" else None)
            records = build_image_list(dataset=dataset, root=root, fold=fold, mode=mode,
                                       coco_folds=coco_folds, train_list=train_list,
                                       cache_dir=cache_dir, workers=workers,
                                       rebuild=rebuild, label_counts=label_counts, shot=shot)
        except EmptyListError:
            records = []
        except (FileNotFoundError, ValueError) as err:
            counts[list_name(mode, fold)] = {"error": str(err)}
            continue
        index = class_index(records)
        counts[list_name(mode, fold)] = {
            "images": len(records),
            "per_class": {str(c): len(index.get(c, [])) for c in classes}}
    return counts


def compare(ours: Counts, reference: Counts) -> list[Comparison]:
    """Every count the reference has for a list we built."""
    rows = []
    for name, mine in ours.items():
        ref = reference.get(name)
        if ref is None or "error" in mine:
            continue
        rows.append(Comparison(name, "images", mine["images"], ref["images"]))
        for c, n in ref.get("per_class", {}).items():
            rows.append(Comparison(name, f"class {c}", mine["per_class"].get(str(c), 0), n))
    return rows


def _mark(ours: int | None, ref: int | None) -> str:
    if ours is None or ref is None:
        return ""
    if ours == ref:
        return "ok"
    ratio = f", x{ours / ref:.2f}" if ref else ""
    return f"MISMATCH {ours - ref:+d}{ratio}"


def _rows(name: str, mine: dict[str, Any], ref: dict[str, Any] | None) -> list[tuple]:
    ref = ref or {}
    rows = [(name, "images", mine["images"], ref.get("images"))]
    ref_classes = ref.get("per_class")
    if ref_classes is None:
        values = list(mine["per_class"].values())
        span = f"{min(values)}..{max(values)}" if values else "-"
        rows.append((name, f"per class {span} images (no reference per class)", None, None))
        return rows
    per_class = [(c, n, ref_classes.get(c)) for c, n in mine["per_class"].items()]
    if len(per_class) > MAX_CLASS_ROWS:  # FSS-1000: only the classes that differ
        wrong = [row for row in per_class if row[2] is not None and row[1] != row[2]]
        matching = len(per_class) - len(wrong)
        rows.append((name, f"per class: {matching} of {len(per_class)} match", None, None))
        per_class = wrong
    rows += [(name, f"class {c}", n, ref) for c, n, ref in per_class]
    return rows


def format_fold_table(fold: int, ours: Counts, reference: Counts) -> str:
    """One fold's table: images kept and eligible images per class, ours vs the authors'."""
    lines = [f"fold {fold}", f"  {'list':<12}{'count':<22}{'ours':>8}{'authors':>9}  check"]
    for mode in ("train", "val", "test"):
        name = list_name(mode, fold)
        mine = ours.get(name)
        if mine is None:
            continue
        if "error" in mine:
            lines.append(f"  {name:<12}not built: {mine['error']}")
            continue
        for list_, row, n, ref in _rows(name, mine, reference.get(name)):
            ours_text = "" if n is None else str(n)
            ref_text = "" if n is None else ("-" if ref is None else str(ref))
            lines.append(f"  {list_:<12}{row:<22}{ours_text:>8}{ref_text:>9}  "
                         f"{_mark(n, ref)}".rstrip())
    return "\n".join(lines)
