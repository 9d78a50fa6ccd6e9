"""Per-fold image lists of PASCAL-5i and COCO-20i, built from a dataset root and cached.

PASCAL root: ``VOC2012/JPEGImages/<id>.jpg``, ``VOC2012/ImageSets/Segmentation/val.txt``
and ``SegmentationClassAug/<id>.png`` (at the root or under ``VOC2012/``). Evaluation
images: val.txt.
COCO root: ``{train2014,val2014}/<name>.jpg`` and ``annotations/{train2014,val2014}/<name>.png``.
Training images: the authors' list (PASCAL default), every training label, or a list
file (``fssam.data.train_lists``). Labels: pixel = class index, 0 background, 255 ignore.

A class is eligible in an image when it covers at least ``MIN_PIXELS`` pixels. Training
keeps images whose classes are all base classes and that have an eligible base class;
evaluation keeps images with an eligible novel class. Eligibility decides only which images
enter a list and which images of a class may be supports; a record also names every class
of the fold present in its label (base or novel), whatever its size (an episode's class is drawn among
those, as the releases do).

Evaluation images: val.txt (PASCAL) or every ``annotations/val2014`` label in name order
(COCO), or the pairs of a list file in the file's order (``dataset.val_list``): the order
of the list decides the releases' evaluation episodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from fssam.contract import IGNORE_LABEL
from fssam.data import benchmarks
from fssam.data.bad_files import check_image_complete, check_not_empty
from fssam.data.benchmarks import BINARY, INDEX
from fssam.data.folds import fold_classes, num_classes
from fssam.data.train_lists import (
    AUTHORS,
    FILE,
    TrainList,
    resolve_train_list,
    resolve_val_list,
)
from fssam.data.transforms import binarize
from fssam.utils.io import WriteError, atomic_write_text

log = logging.getLogger(__name__)

MIN_PIXELS = 2 * 32 * 32
BINARY_THRESHOLD = 128
MODES = ("train", "val")
CACHE_VERSION = 3


class EmptyListError(ValueError):
    """A list holds no eligible image."""


@dataclass(frozen=True)
class ImageRecord:
    """One listed image: absolute image and label paths, the eligible classes of the list's
    class set (``classes``: the fold's base or novel classes) and every class of that set
    present in the label, eligible or not
    (``present``, ascending; ``classes`` when not given)."""

    image: str
    label: str
    classes: tuple[int, ...]
    present: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.present:
            object.__setattr__(self, "present", tuple(self.classes))


def read_image(path: str) -> np.ndarray:
    """RGB uint8 [H,W,3]; FileNotFoundError / ValueError name the file (BadFileError for
    an empty or truncated one, which OpenCV would decode in part without an error)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    check_image_complete(path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str) -> np.ndarray:
    """Class-index label uint8 [H,W] (grey or palette PNG); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label not found: {path}")
    check_not_empty(path, "label")
    try:
        with Image.open(path) as label:
            mode = label.mode
            array = np.array(label) if mode in ("L", "P") else None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read label {path}: {err}") from err
    if array is None:
        raise ValueError(f"label {path} must be a single-channel 8-bit PNG, got mode {mode}")
    return array


def read_pair(image_path: str, label_path: str) -> tuple[np.ndarray, np.ndarray]:
    """An image (float32 RGB 0..255) and its label; ValueError names both files when
    their sizes differ."""
    image, label = read_image(image_path), read_label(label_path)
    if image.shape[:2] != label.shape:
        raise ValueError(f"size mismatch: image {image_path} is {image.shape[1]}x"
                         f"{image.shape[0]} but label {label_path} is "
                         f"{label.shape[1]}x{label.shape[0]}")
    return image.astype(np.float32), label


def read_binary_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    """A one-class mask as 0/1 uint8: the grey value (PIL's ``convert("L")``) >= 128 is the
    object (HSNet's rule). A mask whose size differs from the image's (``shape``: its
    height and width; a few FSS-1000 masks) is resized to it, nearest neighbour."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label not found: {path}")
    try:
        with Image.open(path) as mask:
            grey = np.array(mask.convert("L"))
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read label {path}: {err}") from err
    binary = (grey >= BINARY_THRESHOLD).astype(np.uint8)
    if binary.shape != tuple(shape):
        binary = cv2.resize(binary, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return binary


def read_episode_pair(image_path: str, label_path: str, class_id: int, labels: str = INDEX
                      ) -> tuple[np.ndarray, np.ndarray]:
    """An image (float32 RGB 0..255) and its mask of ``class_id`` (1 on the class, 255
    kept, 0 elsewhere): from a class-index label (``labels`` "index") or a one-class mask
    (``labels`` "binary", ``read_binary_mask``)."""
    if labels == BINARY:
        image = read_image(image_path)
        return image.astype(np.float32), read_binary_mask(label_path, image.shape[:2])
    image, label = read_pair(image_path, label_path)
    return image, binarize(label, class_id)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fssam/lists`` (``~/.cache/fssam/lists``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fssam" / "lists"


def class_index(records: Sequence[ImageRecord]) -> dict[int, list[int]]:
    """Class id -> indices of the records where it is eligible."""
    index: dict[int, list[int]] = {}
    for i, record in enumerate(records):
        for c in record.classes:
            index.setdefault(c, []).append(i)
    return index


def list_pairs(*, dataset: str, root: str, mode: str,
               train_list: str | TrainList | None = None,
               val_list: str | TrainList | None = None) -> list[tuple[str, str]]:
    """(image, label) paths a ``mode`` list is built from, before any label is read.

    ``train_list`` (training only): "authors", "all", a list file, or None for the
    dataset's default (``fssam.data.train_lists``). ``val_list`` (evaluation only):
    "standard" or None (val.txt / every val2014 label) or a list file.
    """
    return benchmarks.get(dataset).pairs(root, mode, _list_of(dataset, mode, train_list,
                                                             val_list))


def checked_pairs(*, dataset: str, root: str, mode: str,
                  train_list: str | TrainList | None = None,
                  val_list: str | TrainList | None = None) -> list[tuple[str, str]]:
    """``list_pairs`` after ``check_images``: a FileNotFoundError when an image is missing."""
    chosen = _list_of(dataset, mode, train_list, val_list)
    pairs = benchmarks.get(dataset).pairs(root, mode, chosen)
    check_images(pairs, chosen)
    return pairs


def _list_of(dataset: str, mode: str, train_list: str | TrainList | None,
             val_list: str | TrainList | None) -> TrainList:
    """The resolved list of ``mode``: ``train_list`` for training, ``val_list`` for
    evaluation."""
    benchmarks.get(dataset).check_subset(mode)
    chosen = train_list if mode == "train" else val_list
    if isinstance(chosen, TrainList):
        return chosen
    return resolve_train_list(dataset, chosen) if mode == "train" else resolve_val_list(chosen)


def _class_pixels(label_path: str, max_class: int) -> dict[int, int]:
    """Pixel count of every class present in the label (0 and 255 left out)."""
    counts = np.bincount(read_label(label_path).ravel(), minlength=256)
    present = [int(c) for c in np.flatnonzero(counts) if c not in (0, IGNORE_LABEL)]
    unknown = [c for c in present if c > max_class]
    if unknown:
        raise ValueError(f"label {label_path} has values {unknown} outside 0..{max_class} and 255")
    return {c: int(counts[c]) for c in present}


def _list_classes(counts: dict[int, int], wanted: set[int], allowed: set[int] | None
                  ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(eligible, present) classes of `wanted`; none when a class outside `allowed` is
    present."""
    if allowed is not None and not set(counts) <= allowed:
        return (), ()
    present = tuple(sorted(c for c in counts if c in wanted))
    return tuple(c for c in present if counts[c] >= MIN_PIXELS), present


def _cache_key(dataset: str, root: str, fold: int, mode: str, coco_folds: str,
               chosen: TrainList, shot: int | None = None) -> dict:
    name = chosen.path if chosen.choice == FILE else chosen.choice
    bench = benchmarks.get(dataset)
    key = {"version": CACHE_VERSION, "dataset": dataset, "root": os.path.abspath(root),
           "fold": int(fold), "mode": mode, "min_pixels": MIN_PIXELS,
           "coco_folds": coco_folds if len(bench.fold_schemes) > 1 else None,
           "list": name, "list_sha256": chosen.sha256}
    if bench.data_classes is not None:  # folds computed from the lists, per shot
        key["shot"] = shot
    if bench.list_files:  # lists read from files under the root: their content counts
        key["root_lists_sha256"] = _files_sha256(*(os.path.join(root, f)
                                                   for f in bench.list_files))
    return key


def _files_sha256(*paths: str) -> str:
    """SHA-256 of the files' contents (a missing file counts as empty)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode() + b"\0")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def list_cache_path(key: dict, cache_dir: str | Path) -> Path:
    """Cache file of a list: named after the dataset, fold, mode and a hash of `key`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{key['dataset']}_fold{key['fold']}_{key['mode']}_{digest}.json"


def check_images(pairs: Sequence[tuple[str, str]], train_list: TrainList) -> None:
    """FileNotFoundError naming the first missing image and how many are missing."""
    missing = [image for image, _ in pairs if not os.path.isfile(image)]
    if not missing:
        return
    hint = ""
    if train_list.choice == AUTHORS:
        hint = ("; train_list='authors' lists the authors' VOC2012 + SBD images, "
                "train_list='all' takes every label on disk")
    raise FileNotFoundError(f"image not found: {missing[0]} ({len(missing)} of {len(pairs)} "
                            f"listed images missing{hint})")


def _scan_labels(pairs: Sequence[tuple[str, str]], max_class: int, workers: int,
                 desc: str, known: dict[str, dict[int, int]] | None = None
                 ) -> list[dict[int, int]]:
    """Class pixel counts of every label (threads: decoding releases the GIL). ``known``:
    counts of labels already read (label path -> counts), extended with the new ones."""
    known = {} if known is None else known
    labels = [label for _, label in pairs]
    todo = list(dict.fromkeys(label for label in labels if label not in known))
    count = partial(_class_pixels, max_class=max_class)
    with ThreadPool(max(1, workers)) as pool:
        known.update(zip(todo, tqdm(pool.imap(count, todo, chunksize=32), total=len(todo),
                                    desc=desc, unit="label", leave=False)))
    return [known[label] for label in labels]


def _build_records(dataset: str, root: str, fold: int, mode: str, coco_folds: str,
                   chosen: TrainList, workers: int,
                   label_counts: dict[str, dict[int, int]] | None,
                   shot: int | None = None) -> list[ImageRecord]:
    pairs = checked_pairs(dataset=dataset, root=root, mode=mode, train_list=chosen,
                          val_list=chosen)
    if not pairs:
        raise ValueError(f"no {mode} images found for {dataset} under {root}")
    wanted = set(fold_classes(dataset, mode, fold, coco_folds, root=root, shot=shot,
                              chosen=chosen))
    if benchmarks.get(dataset).labels == BINARY:
        return _class_records(dataset, pairs, wanted)
    allowed = wanted if mode == "train" else None
    desc = f"{dataset} fold {fold} {mode} list"
    counts = _scan_labels(pairs, num_classes(dataset), workers, desc, label_counts)
    records = []
    for (image, label), pixels in zip(pairs, counts):
        classes, present = _list_classes(pixels, wanted, allowed)
        if classes:
            records.append(ImageRecord(os.path.abspath(image), os.path.abspath(label), classes,
                                       present))
    return records


def _class_records(dataset: str, pairs: Sequence[tuple[str, str]], wanted: set[int]
                   ) -> list[ImageRecord]:
    """Records of a benchmark with one class per image (its ``class_of``): every image of
    a class of the list is eligible, whatever its mask (HSNet's rule)."""
    class_of = benchmarks.get(dataset).class_of
    records = []
    for image, label in pairs:
        class_id = class_of(image, label)
        if class_id in wanted:
            records.append(ImageRecord(os.path.abspath(image), os.path.abspath(label),
                                       (class_id,)))
    return records


def build_image_list(*, dataset: str, root: str, fold: int, mode: str,
                     coco_folds: str = "interleaved", train_list: str | None = None,
                     val_list: str | None = None,
                     cache_dir: str | Path | None = None, workers: int = 8,
                     rebuild: bool = False,
                     label_counts: dict[str, dict[int, int]] | None = None,
                     shot: int | None = None) -> list[ImageRecord]:
    """Eligible images of one fold and mode, read from the cache or built and cached.

    ``train_list`` (training only): "authors", "all", a list file, or None for the
    dataset's default (``fssam.data.train_lists``); ``val_list`` (evaluation only):
    "standard" / None or a list file. The cache file is keyed by the dataset, root, fold,
    mode, COCO fold scheme and the list choice and the list file's content, so changing any of
    them rebuilds the list. ``rebuild`` reads the
    labels again even when the list is cached (and refreshes the cache). ``label_counts``
    (label path -> class pixel counts), shared by the builds of several folds, lets each
    label be read once: the counts do not depend on the fold.
    """
    bench = benchmarks.get(dataset)
    bench.check_fold(fold)
    bench.check_subset(mode)
    bench.check_scheme(coco_folds)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root not found: {root}")
    if bench.data_classes is not None and shot is None:
        raise ValueError(f"{bench.title}'s lists depend on the shot: give shot=")
    chosen = _list_of(dataset, mode, train_list, val_list)
    key = _cache_key(dataset, root, fold, mode, coco_folds, chosen, shot)
    path = list_cache_path(key, cache_dir if cache_dir is not None else default_cache_dir())
    if path.is_file() and not rebuild:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            log.info("image list from cache %s", path)
            return [ImageRecord(img, lbl, tuple(c), tuple(p))
                    for img, lbl, c, p in cached["records"]]
    records = _build_records(dataset, root, fold, mode, coco_folds, chosen, workers,
                             label_counts, shot)
    if not records:
        raise EmptyListError(f"empty {mode} list: no eligible image for {dataset} fold {fold} "
                         f"(coco_folds={coco_folds}) under {root}")
    payload = {"key": key, "records": [[r.image, r.label, list(r.classes), list(r.present)]
                                       for r in records]}
    try:
        atomic_write_text(path, json.dumps(payload))
    except WriteError as err:
        raise WriteError(err.errno, f"{err.strerror} (the image-list cache: set "
                                    f"dataset.cache_dir to a writable folder)") from err
    log.info("built %d %s images for %s fold %d, cached in %s", len(records), mode, dataset,
             fold, path)
    return records
