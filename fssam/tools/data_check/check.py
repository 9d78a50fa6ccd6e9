"""A dataset checked before training: layout, labels, and every fold's lists against the
authors' counts (``scripts/check_data.py``).

``run_check`` returns a report (plain containers, written as JSON by the script);
``format_report`` renders it; ``report["ok"]`` is True only when the layout and the labels
are sound, every list was built, and every available reference count matches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fssam.tools.data_check.diagnosis import diagnose
from fssam.tools.data_check.files import check_labels, check_layout
from fssam.tools.data_check.lists import (build_counts, compare, format_fold_table, list_name,
                                    load_reference)
from fssam.data import benchmarks
from fssam.data.folds import num_classes
from fssam.tools.toy import META_FILE
from fssam.data.train_lists import reference_counts_path, resolve_train_list


class SettingsError(ValueError):
    """The check cannot start: its root, training list or reference file is unusable."""


@dataclass(frozen=True)
class CheckSettings:
    """What to check: ``train_list`` None is the dataset's default, ``reference`` None the
    shipped counts, ``cache_dir`` None the library's list cache; the lists are built again
    (and the cache refreshed) unless ``reuse_cache``."""

    dataset: str
    root: str
    train_list: str | None = None
    coco_folds: str = "interleaved"
    folds: Sequence[int] | None = None  # None: every fold of the benchmark
    reference: str | None = None
    cache_dir: str | None = None
    workers: int = 8
    examples: int = 5
    reuse_cache: bool = False
    shot: int = 1  # the lists of LVIS-92i (its folds depend on the shot)


def run_check(settings: CheckSettings) -> dict[str, Any]:
    """The whole check; unusable settings (root, list, reference) raise SettingsError."""
    s = settings
    try:
        if not os.path.isdir(s.root):
            raise FileNotFoundError(f"dataset root not found: {s.root}")
        bench = benchmarks.get(s.dataset)
        folds = tuple(range(bench.num_folds)) if s.folds is None else tuple(s.folds)
        for fold in folds:
            if bench.check_fold(fold) >= bench.num_folds:  # an all-classes fold: no lists
                raise ValueError(f"unknown fold {fold!r} for {s.dataset} (its folds are "
                                 f"0..{bench.num_folds - 1})")
        if isinstance(s.shot, bool) or not isinstance(s.shot, int) or s.shot < 1:
            raise ValueError(f"shot must be an integer >= 1, got {s.shot!r}")
        train_list = resolve_train_list(s.dataset, s.train_list)
        if s.reference or bench.reference_counts:
            reference_path = Path(s.reference) if s.reference else reference_counts_path(s.dataset)
            reference = load_reference(reference_path)
        else:  # no published count (Deepglobe)
            reference_path, reference = None, {}
    except (FileNotFoundError, ValueError) as err:
        raise SettingsError(str(err)) from err
    classes = num_classes(s.dataset)
    findings, pairs = check_layout(s.dataset, s.root, train_list, keep=s.examples)
    all_pairs = [p for mode_pairs in pairs.values() for p in mode_pairs]
    findings.merge(check_labels(all_pairs, s.root, classes, workers=s.workers, keep=s.examples,
                                labels=bench.labels))
    ours = build_counts(dataset=s.dataset, root=s.root, folds=folds, train_list=train_list,
                        coco_folds=s.coco_folds, cache_dir=s.cache_dir, workers=s.workers,
                        rebuild=not s.reuse_cache, shot=s.shot)
    comparisons = compare(ours, reference)
    synthetic = (Path(s.root) / META_FILE).is_file()
    notes = diagnose(dataset=s.dataset, train_list=train_list, synthetic=synthetic,
                     findings=findings, ours=ours, comparisons=comparisons)
    ok = (not findings and all("error" not in c for c in ours.values())
          and all(c.match for c in comparisons))
    return {
        "dataset": s.dataset, "root": os.path.abspath(s.root), "coco_folds": s.coco_folds,
        "shot": s.shot,
        "folds": list(folds), "train_list": train_list.describe(),
        "reference_file": str(reference_path) if reference_path else None,
        "reference": reference, "synthetic": synthetic,
        "labels_checked": len(set(all_pairs)),
        "findings": [{"kind": f.kind, "count": f.count, "examples": f.examples,
                      "what": f.describe(classes)} for f in findings.values()],
        "lists": ours, "comparisons": [c.to_dict() for c in comparisons],
        "mismatches": sum(not c.match for c in comparisons), "diagnosis": notes, "ok": ok,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as text: header, file findings, one table per fold, diagnosis, verdict."""
    lines = [f"Data check of {report['dataset']} at {report['root']}",
             f"training list: {report['train_list']}",
             f"reference counts: {report['reference_file'] or 'none published for this dataset'}"]
    if report["synthetic"]:
        lines.append("note: synthetic dataset (toy_meta.json): it cannot match the authors' "
                     "counts")
    findings = report["findings"]
    lines += ["", f"Files: {report['labels_checked']} image/label pairs checked, "
                  f"{'no problem' if not findings else f'{len(findings)} kinds of problem'}"]
    lines += [f"  - {f['what']}" for f in findings]
    for fold in report["folds"]:
        present = {k: v for k, v in report["lists"].items()
                   if k in (list_name(m, fold) for m in ("train", "val", "test"))}
        lines += ["", format_fold_table(fold, present, report["reference"])]
    lines += ["", "Diagnosis:"] + [f"  - {note}" for note in report["diagnosis"]]
    return "\n".join(lines + ["", verdict(report)])


def verdict(report: dict[str, Any]) -> str:
    """``PASS: ...`` or ``FAIL: `` and what failed."""
    compared = len(report["comparisons"])
    if report["ok"]:
        return (f"PASS: layout and labels sound, every list built, all {compared} reference "
                f"counts match")
    failed = [name for name, c in report["lists"].items() if "error" in c]
    parts = [f"{len(report['findings'])} kinds of file problem" if report["findings"] else "",
             f"{len(failed)} lists not built" if failed else "",
             f"{report['mismatches']} of {compared} reference counts differ"
             if report["mismatches"] else ""]
    return "FAIL: " + ", ".join(p for p in parts if p)
