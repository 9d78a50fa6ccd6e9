"""Write LVIS-92i's masks and lists (``fssam.data.benchmarks.lvis``) under the LVIS root.

One source per split (train, val):

- the LVIS v1 json (``--train-json lvis_v1_train.json``, ``--val-json lvis_v1_val.json``):
  the list takes the categories in ascending id, each category's images in the order in
  which the json's annotation list first mentions them; ``lvis92i_categories.txt`` comes
  from the json's ``categories``;
- the pickles Matcher and SANSA distribute (``--train-pickle lvis_train.pkl``,
  ``--val-pickle lvis_val.pkl``): category -> image (``train2017/<id>.jpg``, relative to
  ``<root>/coco``) -> ``{'annotations': [...]}``. The list keeps the pickle's own order
  (categories, then images), which is what makes our episodes equal the references'.
  Polygons take the image's size from its file header. A pickle can run code when it is
  loaded: only plain data (dicts, lists, strings, numbers, NumPy arrays) is accepted, any
  other global is refused. The pickles hold no category names: ``--categories-json``
  (any LVIS v1 json) writes ``lvis92i_categories.txt``.

A mask is the union of the category's instances in the image (polygons, uncompressed or
compressed RLE, or a 0/1 array): 0 background, 255 object, at the image's size. Masks are
written atomically and kept when present, so a rerun resumes (``--overwrite`` rewrites
them); a split's list is written last, so its presence means that the split is complete.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from fssam.data.benchmarks.base import TRAIN, VAL
from fssam.data.benchmarks.lvis import CATEGORY_FILE, IMAGE_DIR, LIST_FILES, MASK_DIR
from fssam.tools.lvis_sources import (Pair, PathLike, category_names, load_json, load_pickle,
                                      pairs_from_json, pairs_from_pickle)
from fssam.utils.io import WriteError, atomic_write, atomic_write_text

log = logging.getLogger("prepare_lvis")

SPLITS = (VAL, TRAIN)  # the order in which they are written: the smaller first
SHOWN = 5  # missing images named in the error


def segmentation_mask(seg: Any, height: int, width: int, where: str) -> np.ndarray:
    """Bool [H,W] of one checked segmentation (polygons, RLE or a 0/1 array)."""
    if isinstance(seg, np.ndarray):
        if seg.shape != (height, width):
            raise ValueError(f"{where}: mask array is {seg.shape}, the image {height}x{width}")
        return seg != 0
    if isinstance(seg, dict):
        if [int(v) for v in seg["size"]] != [height, width]:
            raise ValueError(f"{where}: RLE size {list(seg['size'])}, the image "
                             f"{height}x{width}")
        rle = mask_utils.frPyObjects(seg, height, width) if isinstance(
            seg["counts"], list) else seg
        return mask_utils.decode(rle).astype(bool)
    polygons = [np.asarray(p, np.float64).ravel().tolist() for p in seg]
    polygons = [p for p in polygons if len(p) >= 6]  # fewer than 3 points enclose nothing
    if not polygons:
        return np.zeros((height, width), bool)
    return mask_utils.decode(mask_utils.merge(
        mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def image_size(root: Path, pair: Pair) -> tuple[int, int]:
    """(height, width): from the source, else the image's header, else (image missing and
    not checked) the first RLE or array of the pair."""
    if pair.size is not None:
        return pair.size
    path = root / pair.image
    if path.is_file():
        with Image.open(path) as image:
            width, height = image.size
        return height, width
    for seg in pair.segmentations:
        if isinstance(seg, (dict, np.ndarray)):
            size = seg["size"] if isinstance(seg, dict) else seg.shape
            return int(size[0]), int(size[1])
    raise FileNotFoundError(f"{pair.where()}: image not found: {path} (its polygons need the "
                            f"image's size)")


def union_mask(root: Path, pair: Pair) -> np.ndarray:
    """uint8 [H,W] mask of a pair: 255 where any of its instances is, 0 elsewhere."""
    height, width = image_size(root, pair)
    union = np.zeros((height, width), bool)
    for index, seg in enumerate(pair.segmentations):
        try:
            union |= segmentation_mask(seg, height, width, f"{pair.where()}, annotation {index}")
        except (TypeError, OverflowError) as err:
            raise ValueError(f"{pair.where()}, annotation {index}: cannot decode its "
                             f"segmentation ({err})") from err
    return np.where(union, 255, 0).astype(np.uint8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Write ``mask`` as a single-channel PNG, atomically (a temp file, then a rename)."""
    ok, data = cv2.imencode(".png", mask)
    if not ok:
        raise ValueError(f"cannot encode the mask of {path}")
    atomic_write(path, lambda handle: handle.write(data.tobytes()))


def check_images(root: Path, pairs: Iterable[Pair]) -> None:
    """A FileNotFoundError naming the first few missing images and their count."""
    images = dict.fromkeys(p.image for p in pairs)
    missing = [i for i in images if not (root / i).is_file()]
    if missing:
        more = ", ..." if len(missing) > SHOWN else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(images)} images missing under {root}: "
            f"{', '.join(missing[:SHOWN])}{more} (put the COCO 2017 images in "
            f"{root / IMAGE_DIR}/train2017 and val2017, or pass --no-image-check)")


def remove_temp_files(folder: Path) -> None:
    """Remove the temp files an interrupted ``write_mask`` left in ``folder/<category>``."""
    if not folder.is_dir():
        return
    for category in os.scandir(folder):
        if category.is_dir():
            for entry in os.scandir(category.path):
                name = entry.name
                if name.startswith(".") and ".png." in name and name.endswith(".tmp"):
                    os.unlink(entry.path)


def _write_pair(root: Path, split: str, pair: Pair) -> None:
    write_mask(root / pair.mask(split), union_mask(root, pair))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _map(job: Callable[[Pair], None], todo: list[Pair], workers: int) -> Iterator[None]:
    """``job`` of every pair, in this process or in ``workers`` processes."""
    if workers <= 1 or len(todo) < 2:
        yield from map(job, todo)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers, initializer=_worker_init) as pool:  # exit: workers ended
        yield from pool.imap_unordered(job, todo, chunksize=max(1, min(64, len(todo) // (
            4 * workers))))


def prepare_split(root: PathLike, split: str, pairs: list[Pair], *, workers: int = 1,
                  overwrite: bool = False, image_check: bool = True,
                  progress: bool = True) -> dict[str, int]:
    """Write the masks of ``pairs`` (those present kept unless ``overwrite``), then the
    split's list; returns counts of categories, pairs, masks written and kept."""
    root = Path(root)
    masks: dict[str, Pair] = {}
    for pair in pairs:
        other = masks.setdefault(pair.mask(split), pair)
        if other is not pair:
            raise ValueError(f"{pair.where()} and {other.where()} share the mask "
                             f"{pair.mask(split)}")
    if image_check:
        check_images(root, pairs)
    list_file = root / LIST_FILES[split]
    list_file.unlink(missing_ok=True)  # back when the masks are all there
    folder = root / MASK_DIR / split
    remove_temp_files(folder)
    todo = [p for p in pairs if overwrite or not (root / p.mask(split)).is_file()]
    try:
        for _ in tqdm(_map(partial(_write_pair, root, split), todo, workers), total=len(pairs),
                      initial=len(pairs) - len(todo), desc=f"LVIS-92i {split} masks",
                      unit="mask", disable=not progress):
            pass
    except BaseException:
        remove_temp_files(folder)  # of the workers ended mid-write
        raise
    atomic_write_text(list_file, "".join(f"{p.image} {p.mask(split)}\n" for p in pairs))
    return {"categories": len({p.category for p in pairs}), "pairs": len(pairs),
            "written": len(todo), "kept": len(pairs) - len(todo)}


def write_categories(root: PathLike, names: Mapping[int, str]) -> Path:
    """``lvis92i_categories.txt``: ``<id> <name>`` lines in ascending id."""
    return atomic_write_text(Path(root) / CATEGORY_FILE,
                             "".join(f"{i} {names[i]}\n" for i in sorted(names)))


def prepare(root: PathLike, *, jsons: Mapping[str, PathLike] | None = None,
            pickles: Mapping[str, PathLike] | None = None,
            categories_json: PathLike | None = None, workers: int | None = None,
            overwrite: bool = False, image_check: bool = True,
            progress: bool = True) -> dict[str, dict[str, int]]:
    """Prepare every split given (``jsons`` / ``pickles``: split -> file, one source per
    split); returns ``prepare_split``'s counts per split. Every source file is checked to
    exist before anything is written."""
    jsons, pickles = dict(jsons or {}), dict(pickles or {})
    both = sorted(set(jsons) & set(pickles))
    unknown = sorted((set(jsons) | set(pickles)) - set(SPLITS))
    if both or unknown or not jsons and not pickles:
        raise ValueError(f"give one source per split ({', '.join(SPLITS)}): a json or a pickle "
                         f"(both for {both}, unknown {unknown})")
    for path in [*jsons.values(), *pickles.values(), *filter(None, [categories_json])]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"LVIS source file not found: {path}")
    names = None
    if categories_json is not None:
        names = category_names(load_json(categories_json), str(categories_json))
        write_categories(root, names)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    counts = {}
    for split in [s for s in SPLITS if s in jsons or s in pickles]:
        if split in jsons:
            data = load_json(jsons[split])
            if names is None:
                names = category_names(data, str(jsons[split]))
                write_categories(root, names)
            pairs = pairs_from_json(data, str(jsons[split]))
            del data  # the pairs keep the segmentations only
        else:
            pairs = pairs_from_pickle(load_pickle(pickles[split]), str(pickles[split]))
        counts[split] = prepare_split(root, split, pairs, workers=workers, overwrite=overwrite,
                                      image_check=image_check, progress=progress)
    for split, c in counts.items():
        log.info("%s: %d categories, %d (category, image) pairs; masks written %d, kept %d",
                 split, c["categories"], c["pairs"], c["written"], c["kept"])
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True,
                        help="the LVIS root (dataset.root), holding coco/train2017 and val2017")
    for split in (TRAIN, VAL):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--{split}-json", help=f"lvis_v1_{split}.json (LVIS v1)")
        group.add_argument(f"--{split}-pickle", help=f"lvis_{split}.pkl (Matcher, SANSA)")
    parser.add_argument("--categories-json", default=None,
                        help="an LVIS v1 json whose categories name lvis92i_categories.txt "
                             "(default: the split's json; pickles have no names)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: CPUs, at most 8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rewrite the masks already present (default: keep them)")
    parser.add_argument("--no-image-check", action="store_true",
                        help="do not require every mask's image under <root>/coco")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    if not any((args.train_json, args.val_json, args.train_pickle, args.val_pickle)):
        parser.error("give a source: --train-json/--val-json or --train-pickle/--val-pickle")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    jsons = {s: p for s, p in ((TRAIN, args.train_json), (VAL, args.val_json)) if p}
    pickles = {s: p for s, p in ((TRAIN, args.train_pickle), (VAL, args.val_pickle)) if p}
    try:
        prepare(args.root, jsons=jsons, pickles=pickles, categories_json=args.categories_json,
                workers=args.workers, overwrite=args.overwrite,
                image_check=not args.no_image_check, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError, WriteError) as err:
        log.error("prepare_lvis.py: error: %s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
