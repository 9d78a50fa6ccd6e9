"""Sort the ISIC 2018 Task 1 training images into the class folders of the ISIC2018
cross-domain test set: ``<root>/ISIC2018_Task1-2_Training_Input/<c>/<id>.jpg``.

The class of each image comes from a ``ID,Class`` CSV (PATNet ships one as
``data/isic/class_id.csv``: 2594 rows, nevus 1867, melanoma 519, seborrheic_keratosis 208).
Classes are numbered 1 nevus, 2 melanoma, 3 seborrheic_keratosis (SANSA's numbering;
PATNet does not say). Images are hard-linked (copied across file systems); the masks stay
in ``<root>/ISIC2018_Task1_Training_GroundTruth/``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
from pathlib import Path

from fssam.data.benchmarks.isic import CLASSES, IMAGES

log = logging.getLogger("prepare_isic")


def read_classes(path: str | os.PathLike) -> dict[str, int]:
    """Image id -> class number of an ``ID,Class`` CSV; errors name the file and row."""
    numbers = {name: i for i, name in enumerate(CLASSES, start=1)}
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f)
        if rows.fieldnames is None or not {"ID", "Class"} <= set(rows.fieldnames):
            raise ValueError(f"{path}: expected the columns ID,Class")
        for line, row in enumerate(rows, start=2):
            name = row["Class"].strip()
            if name not in numbers:
                raise ValueError(f"{path}:{line}: unknown class {name!r} (expected one of "
                                 f"{', '.join(CLASSES)})")
            out[row["ID"].strip()] = numbers[name]
    return out


def sort_images(root: str | os.PathLike, classes: dict[str, int]) -> dict[int, int]:
    """Link every listed image into its class folder; returns images per class."""
    base = Path(root) / IMAGES
    missing = [i for i in classes if not (base / f"{i}.jpg").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed images missing in {base}: "
                                f"{', '.join(missing[:5])}")
    counts = {c: 0 for c in range(1, len(CLASSES) + 1)}
    for image_id, c in sorted(classes.items()):
        target = base / str(c) / f"{image_id}.jpg"
        target.parent.mkdir(exist_ok=True)
        if not target.exists():
            try:
                os.link(base / f"{image_id}.jpg", target)
            except OSError:
                shutil.copy2(base / f"{image_id}.jpg", target)
        counts[c] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the ISIC root (dataset.root)")
    parser.add_argument("--classes", required=True, help="ID,Class CSV of the images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = sort_images(args.root, read_classes(args.classes))
    except (FileNotFoundError, ValueError) as err:
        log.error("prepare_isic.py: error: %s", err)
        return 2
    log.info("images per class: %s", counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
