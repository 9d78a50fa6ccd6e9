"""Check a PASCAL-5i or COCO-20i dataset before training on it.

Layout (folders, missing images and labels), labels (single-channel class-index PNGs,
values, sizes), then every fold's training and evaluation lists, built by the project's
list builder (and cached for training), compared with the authors' counts. Exit status 0
when everything is sound and every available reference count matches, 1 otherwise, 2
for bad arguments.

    python scripts/check_data.py --dataset pascal --root data/pascal
    python scripts/check_data.py --dataset coco --root data/coco --json check_coco.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fssam.tools.data_check.check import CheckSettings, SettingsError, format_report, run_check
from fssam.data import benchmarks
from fssam.data.folds import COCO_FOLDS, NUM_FOLDS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=benchmarks.NAMES)
    p.add_argument("--root", required=True, help="dataset root (as dataset.root)")
    p.add_argument("--train-list", default=None,
                   help="authors | all | a list file (as dataset.train_list; default: the "
                        "dataset's, authors for PASCAL, all for COCO)")
    p.add_argument("--coco-folds", default="interleaved", choices=COCO_FOLDS)
    p.add_argument("--folds", type=int, nargs="+", default=None,
                   choices=range(NUM_FOLDS), metavar="FOLD",
                   help="folds to check (default all of the dataset's)")
    p.add_argument("--shot", type=int, default=1,
                   help="shot the lists are built for (LVIS-92i's folds depend on it; "
                        "default 1)")
    p.add_argument("--reference", default=None,
                   help="reference-counts JSON (default: the authors' counts shipped with the "
                        "package)")
    p.add_argument("--cache-dir", default=None,
                   help="image-list cache (as dataset.cache_dir; default ~/.cache/fssam/lists)")
    p.add_argument("--reuse-cache", action="store_true",
                   help="take lists from the cache when there (default: read every label "
                        "again and refresh the cache)")
    p.add_argument("--workers", type=int, default=8, help="threads reading labels")
    p.add_argument("--examples", type=int, default=5, help="files named per kind of problem")
    p.add_argument("--json", dest="json_path", help="also write the report to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    settings = CheckSettings(dataset=args.dataset, root=args.root, train_list=args.train_list,
                             coco_folds=args.coco_folds,
                             folds=None if args.folds is None else tuple(args.folds),
                             reference=args.reference, cache_dir=args.cache_dir,
                             workers=args.workers, examples=args.examples,
                             reuse_cache=args.reuse_cache, shot=args.shot)
    try:
        report = run_check(settings)
    except SettingsError as err:
        print(f"check_data.py: error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
