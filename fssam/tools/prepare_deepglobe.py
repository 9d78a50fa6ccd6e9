"""Cut the DeepGlobe land-cover images into the Deepglobe cross-domain test set (PATNet's rule).

Reads ``<id>_sat.jpg`` and its colour mask ``<id>_mask.png`` from ``--source`` (the
DeepGlobe Land Cover Classification training images, 2448 x 2448) and writes, for every
kept tile, ``<out>/<c>/test/origin/<id>_<i><j>.jpg`` and the tile's mask of class c
``<out>/<c>/test/groundtruth/<id>_<i><j>.png`` (0/255) into the folder of every class it
holds. Each image is cut on a 6 x 6 grid (tile bounds ``int(k * side / 6)``: 408 x 408
tiles from 2448); a tile is kept when its mask holds more than one colour and its rarest
colour covers more than 0.048 of it; class c is the pixels of exactly its colour
(1 agriculture yellow, 2 urban cyan, 3 rangeland magenta, 4 forest green, 5 water blue,
6 barren white; unknown black is no class).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from fssam.data.benchmarks.deepglobe import COLOURS

log = logging.getLogger("prepare_deepglobe")
GRID = 6
MIN_SHARE = 0.048


def tiles(side_h: int, side_w: int, grid: int = GRID) -> list[tuple[int, int, slice, slice]]:
    """(i, j, rows, cols) of the grid's tiles: bounds ``int(k * side / grid)``."""
    rows = [int(k * side_h / grid) for k in range(grid + 1)]
    cols = [int(k * side_w / grid) for k in range(grid + 1)]
    return [(i, j, slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
            for i in range(grid) for j in range(grid)]


def keep(mask: np.ndarray, min_share: float = MIN_SHARE) -> bool:
    """More than one colour, and the rarest covers more than ``min_share`` of the tile."""
    _, counts = np.unique(mask.reshape(-1, 3), axis=0, return_counts=True)
    return len(counts) > 1 and counts.min() / mask.shape[0] / mask.shape[1] > min_share


def read_rgb(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if array is None:
        raise ValueError(f"cannot read {path}")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def cut_image(sat: Path, mask_path: Path, out: Path, *, grid: int = GRID,
              min_share: float = MIN_SHARE, threshold: bool = False) -> dict[int, int]:
    """Write the kept tiles of one image; returns tiles written per class."""
    image, mask = read_rgb(sat), read_rgb(mask_path)
    if image.shape != mask.shape:
        raise ValueError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]}, its image {sat} "
                         f"{image.shape[1]}x{image.shape[0]}")
    if threshold:  # not the reference's: snap every channel to 0/255 first
        mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    stem = sat.name[: -len("_sat.jpg")]
    written: dict[int, int] = {}
    for i, j, rows, cols in tiles(*mask.shape[:2], grid):
        tile = mask[rows, cols]
        if not keep(tile, min_share):
            continue
        for c, colour in enumerate(COLOURS, start=1):
            binary = (tile == np.array(colour, np.uint8)).all(axis=2)
            if not binary.any():
                continue
            folder = out / str(c) / "test"
            (folder / "origin").mkdir(parents=True, exist_ok=True)
            (folder / "groundtruth").mkdir(parents=True, exist_ok=True)
            name = f"{stem}_{i}{j}"
            cv2.imwrite(str(folder / "origin" / f"{name}.jpg"),
                        cv2.cvtColor(image[rows, cols], cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / "groundtruth" / f"{name}.png"),
                        binary.astype(np.uint8) * 255)
            written[c] = written.get(c, 0) + 1
    return written


def prepare(source: str | os.PathLike, out: str | os.PathLike, **kwargs) -> dict[int, int]:
    """Cut every ``<id>_sat.jpg`` of ``source``; returns tiles per class."""
    source, out = Path(source), Path(out)
    sats = sorted(source.glob("*_sat.jpg"))
    if not sats:
        raise FileNotFoundError(f"no <id>_sat.jpg image in {source}")
    totals = {c: 0 for c in range(1, len(COLOURS) + 1)}
    for sat in sats:
        mask = sat.with_name(sat.name.replace("_sat.jpg", "_mask.png"))
        if not mask.is_file():
            raise FileNotFoundError(f"mask not found: {mask} (the mask of {sat})")
        for c, n in cut_image(sat, mask, out, **kwargs).items():
            totals[c] += n
    return totals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="folder of <id>_sat.jpg and <id>_mask.png (DeepGlobe land cover)")
    parser.add_argument("--out", required=True, help="the Deepglobe root to write (dataset.root)")
    parser.add_argument("--grid", type=int, default=GRID, help="tiles per side (default 6)")
    parser.add_argument("--min-share", type=float, default=MIN_SHARE,
                        help="smallest share of the rarest colour in a kept tile (default 0.048)")
    parser.add_argument("--threshold", action="store_true",
                        help="snap mask channels to 0/255 at 128 before matching colours "
                             "(not the reference's rule)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        totals = prepare(args.source, args.out, grid=args.grid, min_share=args.min_share,
                         threshold=args.threshold)
    except (FileNotFoundError, ValueError) as err:
        log.error("prepare_deepglobe.py: error: %s", err)
        return 2
    log.info("tiles per class: %s (%d in all) under %s", totals, sum(totals.values()), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
