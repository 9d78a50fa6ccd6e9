"""LVIS-92i's sources, read into (category, image) pairs in list order.

- The LVIS v1 json: the categories in ascending id, each category's images in the order in
  which the json's annotation list first mentions them; the image path is ``coco/`` and the
  last two parts of the image's ``coco_url`` (or ``file_name``).
- The pickles Matcher and SANSA distribute: category -> image (``train2017/<id>.jpg``,
  relative to ``<root>/coco``) -> ``{'annotations': [...]}``, in the pickle's own order,
  which is what makes our episodes equal the references'. A pickle can run any code when it
  is loaded: ``PlainDataUnpickler`` accepts plain data only and refuses any other global.

Errors name the file and the entry (image, annotation, category).
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fssam.data.benchmarks.lvis import IMAGE_DIR, MASK_DIR, NUM_CATEGORIES

PathLike = str | os.PathLike
_PLAIN_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bytes",
                   "bytearray", "bool")
PLAIN_GLOBALS = frozenset(
    {(module, name) for module in ("builtins", "__builtin__") for name in _PLAIN_BUILTINS}
    | {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
       ("_codecs", "encode")}
    | {(f"numpy.{core}.{module}", name) for core in ("core", "_core")
       for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                            ("numeric", "_frombuffer"))})


@dataclass(frozen=True, eq=False)
class Pair:
    """One (category, image) line of a list: the image relative to the root, its instances'
    segmentations, the image's (height, width) when the source gives it, and the source."""

    category: int
    image: str
    segmentations: tuple[Any, ...]
    size: tuple[int, int] | None
    source: str

    def mask(self, split: str) -> str:
        return f"{MASK_DIR}/{split}/{self.category}/{Path(self.image).stem}.png"

    def where(self) -> str:
        return f"{self.source}: category {self.category}, image {self.image}"


def check_category(value: Any, where: str) -> int:
    """``value`` as an LVIS v1 category id (1..1203); a ValueError naming ``where`` else."""
    try:
        category = int(value)
    except (TypeError, ValueError):
        category = 0
    if category != value or not 1 <= category <= NUM_CATEGORIES:
        raise ValueError(f"{where}: category id {value!r} is not one of LVIS v1's "
                         f"(an integer in 1..{NUM_CATEGORIES})")
    return category


def check_segmentation(seg: Any, where: str) -> Any:
    """``seg`` if it is a polygon list, an RLE dict or a 2-D array; a ValueError else."""
    if isinstance(seg, list) and all(isinstance(p, (list, tuple, np.ndarray)) for p in seg):
        return seg
    if isinstance(seg, dict) and {"counts", "size"} <= seg.keys() and isinstance(
            seg["counts"], (list, str, bytes)):
        return seg
    if isinstance(seg, np.ndarray) and seg.ndim == 2:
        return seg
    raise ValueError(f"{where}: unknown segmentation type {type(seg).__name__} (expected a "
                     f"list of polygons, an RLE dict with counts and size, or a 2-D array)")


def _require(entry: Any, keys: Iterable[str], where: str) -> None:
    missing = [k for k in keys if k not in entry] if isinstance(entry, dict) else list(keys)
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")


def load_json(path: PathLike) -> dict[str, Any]:
    """An LVIS v1 json, checked to hold images, annotations and categories."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LVIS json not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    _require(data, ("images", "annotations", "categories"), f"{path} (an LVIS v1 json)")
    return data


def image_path(entry: dict[str, Any], where: str) -> str:
    """``coco/<folder>/<file>`` of an image entry: the last two parts of its ``coco_url``
    (``http://images.cocodataset.org/val2017/000000000139.jpg``) or of its ``file_name``."""
    name = str(entry.get("coco_url") or entry.get("file_name") or "")
    parts = name.replace("\\", "/").split("/")
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        raise ValueError(f"{where}: cannot tell the image's folder from {name!r} (expected "
                         f"a coco_url or file_name ending in <train2017|val2017>/<file>)")
    return f"{IMAGE_DIR}/{parts[-2]}/{parts[-1]}"


def pairs_from_json(data: dict[str, Any], source: str) -> list[Pair]:
    """The (category, image) pairs of a json: ascending category, each category's images in
    the order of their first annotation."""
    images: dict[int, tuple[str, tuple[int, int]]] = {}
    for n, entry in enumerate(data["images"]):
        where = f"{source}: image {entry.get('id', f'#{n}') if isinstance(entry, dict) else n}"
        _require(entry, ("id", "height", "width"), where)
        images[int(entry["id"])] = (image_path(entry, where),
                                    (int(entry["height"]), int(entry["width"])))
    grouped: dict[int, dict[int, list[Any]]] = {}
    for n, ann in enumerate(data["annotations"]):
        where = f"{source}: annotation {ann.get('id', f'#{n}') if isinstance(ann, dict) else n}"
        _require(ann, ("image_id", "category_id", "segmentation"), where)
        category = check_category(ann["category_id"], where)
        if ann["image_id"] not in images:
            raise ValueError(f"{where} refers to unknown image id {ann['image_id']!r}")
        seg = check_segmentation(ann["segmentation"], where)
        size = images[ann["image_id"]][1]
        if isinstance(seg, dict) and [int(v) for v in seg["size"]] != list(size):
            raise ValueError(f"{where}: RLE size {seg['size']}, its image {size[0]}x{size[1]}")
        grouped.setdefault(category, {}).setdefault(int(ann["image_id"]), []).append(seg)
    return [Pair(category, images[i][0], tuple(segs), images[i][1], source)
            for category in sorted(grouped) for i, segs in grouped[category].items()]


def category_names(data: dict[str, Any], source: str) -> dict[int, str]:
    """Category id -> name of a json's ``categories``."""
    names = {}
    for n, entry in enumerate(data["categories"]):
        where = f"{source}: categories[{n}]"
        _require(entry, ("id", "name"), where)
        names[check_category(entry["id"], where)] = str(entry["name"])
    return names


def _latin1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 only."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


class PlainDataUnpickler(pickle.Unpickler):
    """Loads plain data only. A pickle can run any code when loaded (it names functions that
    the loader calls): this one resolves only the globals that dicts, lists, strings, numbers
    and NumPy arrays need (``PLAIN_GLOBALS``) and refuses anything else."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PLAIN_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self.source}: refused the global {module}.{name}: a pickle can run code, "
                f"so only plain data (dicts, lists, strings, numbers, NumPy arrays) is loaded")
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        return super().find_class(module, name)


def load_pickle(path: PathLike) -> Any:
    """The plain data of a pickle (``PlainDataUnpickler``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LVIS pickle not found: {path}")
    with open(path, "rb") as f:
        try:
            return PlainDataUnpickler(f, str(path)).load()
        except (EOFError, pickle.UnpicklingError) as err:
            if str(path) in str(err):
                raise
            raise pickle.UnpicklingError(f"{path}: not a readable pickle ({err})") from err


def pairs_from_pickle(data: Any, source: str) -> list[Pair]:
    """The (category, image) pairs of a Matcher/SANSA pickle, in the pickle's order."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a dict category -> image -> annotations, got "
                         f"{type(data).__name__}")
    pairs = []
    for key, images in data.items():
        category = check_category(key, f"{source}: category key {key!r}")
        if not isinstance(images, dict):
            raise ValueError(f"{source}: category {category}: expected a dict image -> "
                             f"annotations, got {type(images).__name__}")
        for name, entry in images.items():
            where = f"{source}: category {category}, image {name}"
            _require(entry, ("annotations",), where)
            segs = []
            for n, ann in enumerate(entry["annotations"]):
                _require(ann, ("segmentation",), f"{where}, annotation {n}")
                segs.append(check_segmentation(ann["segmentation"], f"{where}, annotation {n}"))
            image = str(name).replace("\\", "/").lstrip("/")
            pairs.append(Pair(category, f"{IMAGE_DIR}/{image}", tuple(segs), None, source))
    return pairs

