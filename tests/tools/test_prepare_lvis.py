"""LVIS-92i preparation (fssam.tools.prepare_lvis) on tiny hand-built LVIS v1 jsons and
Matcher-style pickles: mask unions, list order, the plain-data unpickler, resuming, errors."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fssam.data.benchmarks import lvis
from fssam.tools import prepare_lvis
from fssam.tools.lvis_sources import load_pickle

from ..conftest import script_module

REPO = Path(__file__).resolve().parents[2]
# two images: A in val2017 (6 x 8), B in train2017 (5 x 7), as LVIS v1 val mixes both
A, B = "coco/val2017/000000000139.jpg", "coco/train2017/000000000285.jpg"
SIZES = {A: (6, 8), B: (5, 7)}


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """Polygon of the pixel corners (x0, y0)..(x1, y1): pycocotools fills rows y0..y1-1,
    columns x0..x1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _filled(size: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(size, bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def _uncompressed(mask: np.ndarray) -> dict:
    """Column-major run lengths starting with a run of zeros, written out here."""
    runs, value, length = [], False, 0
    for pixel in mask.T.ravel():
        if pixel != value:
            runs.append(length)
            value, length = pixel, 0
        length += 1
    return {"size": list(mask.shape), "counts": runs + [length]}


def _compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


# category -> image -> expected mask; block shapes chosen so that each union is visible
EXPECTED = {
    3: {B: _filled(SIZES[B], (1, 1, 4, 3)), A: _filled(SIZES[A], (0, 3, 3, 6))},
    12: {A: _filled(SIZES[A], (1, 1, 5, 3), (6, 0, 8, 2), (3, 2, 7, 5)),
         B: _filled(SIZES[B], (2, 0, 7, 2))},
}


def _json() -> dict:
    images = [{"id": 139, "height": 6, "width": 8,
               "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg"},
              {"id": 285, "height": 5, "width": 7,
               "coco_url": "http://images.cocodataset.org/train2017/000000000285.jpg"}]
    annotations = [  # category 12 first mentions A, category 3 first mentions B
        {"id": 1, "image_id": 139, "category_id": 12,  # two polygons in one annotation
         "segmentation": [_rect(1, 1, 5, 3), _rect(6, 0, 8, 2)]},
        {"id": 2, "image_id": 285, "category_id": 3,
         "segmentation": _compressed(EXPECTED[3][B])},
        {"id": 3, "image_id": 139, "category_id": 3,
         "segmentation": _uncompressed(EXPECTED[3][A])},
        {"id": 4, "image_id": 139, "category_id": 12,  # a second instance: the union
         "segmentation": _uncompressed(_filled(SIZES[A], (3, 2, 7, 5)))},
        {"id": 5, "image_id": 285, "category_id": 12, "segmentation": [_rect(2, 0, 7, 2)]},
    ]
    categories = [{"id": 12, "name": "apron"}, {"id": 3, "name": "aerosol_can"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _root(tmp_path: Path, data: dict | None = None) -> tuple[Path, Path]:
    root = tmp_path / "LVIS"
    for image, (h, w) in SIZES.items():
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / image), np.full((h, w, 3), 90, np.uint8))
    source = tmp_path / "lvis_v1_val.json"
    source.write_text(json.dumps(_json() if data is None else data))
    return root, source


def _lines(root: Path, split: str = "val") -> list[tuple[str, str]]:
    text = (root / lvis.LIST_FILES[split]).read_text()
    return [tuple(line.split(" ")) for line in text.splitlines()]


def _mask(root: Path, relative: str) -> np.ndarray:
    mask = cv2.imread(str(root / relative), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.ndim == 2 and mask.dtype == np.uint8, relative
    assert set(np.unique(mask)) <= {0, 255}
    return mask == 255


def _mask_path(split: str, category: int, image: str) -> str:
    return f"masks/{split}/{category}/{Path(image).stem}.png"


def test_json_masks_are_the_unions_and_the_list_follows_first_mentions(tmp_path: Path) -> None:
    root, source = _root(tmp_path)
    counts = prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    # ascending category; within one, the order of the annotations' first mentions
    assert _lines(root) == [(i, _mask_path("val", c, i))
                            for c, i in ((3, B), (3, A), (12, A), (12, B))]
    for category, images in EXPECTED.items():
        for image, expected in images.items():
            assert np.array_equal(_mask(root, _mask_path("val", category, image)), expected)
    assert (root / lvis.CATEGORY_FILE).read_text() == "3 aerosol_can\n12 apron\n"
    assert lvis.read_category_names(str(root)) == {3: "aerosol_can", 12: "apron"}
    assert counts == {"val": {"categories": 2, "pairs": 4, "written": 4, "kept": 0}}


def test_worker_processes_write_the_same_bytes(tmp_path: Path) -> None:
    one, source = _root(tmp_path / "one")
    two, _ = _root(tmp_path / "two")
    prepare_lvis.prepare(one, jsons={"val": source}, workers=1, progress=False)
    prepare_lvis.prepare(two, jsons={"val": source}, workers=2, progress=False)
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) == 4 and files == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    for path in [*files, Path(lvis.LIST_FILES["val"])]:
        assert (one / path).read_bytes() == (two / path).read_bytes()


def _matcher_pickle(path: Path, protocol: int) -> None:
    """Category keys not ascending (12 before 3), images not sorted within a category."""
    block = _filled(SIZES[A], (2, 1, 4, 4))
    data = {12: {"train2017/000000000285.jpg": {"annotations": [
                     {"segmentation": [_rect(2, 0, 7, 2)], "bbox": [2, 0, 5, 2]}]},
                 "val2017/000000000139.jpg": {"annotations": [
                     {"segmentation": [_rect(1, 1, 5, 3)]},
                     {"segmentation": block.astype(np.uint8)}]}},  # a 0/1 array
            3: {"val2017/000000000139.jpg": {"annotations": [
                    {"segmentation": _compressed(EXPECTED[3][A])}]}}}
    path.write_bytes(pickle.dumps(data, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_keeps_its_own_order(tmp_path: Path, protocol: int) -> None:
    root, source = _root(tmp_path)
    _matcher_pickle(tmp_path / "lvis_val.pkl", protocol)
    prepare_lvis.prepare(root, pickles={"val": tmp_path / "lvis_val.pkl"},
                         categories_json=source, workers=1, progress=False)
    assert _lines(root) == [(B, _mask_path("val", 12, B)), (A, _mask_path("val", 12, A)),
                            (A, _mask_path("val", 3, A))]
    union = _filled(SIZES[A], (1, 1, 5, 3), (2, 1, 4, 4))  # polygon | array
    assert np.array_equal(_mask(root, _mask_path("val", 12, A)), union)
    assert np.array_equal(_mask(root, _mask_path("val", 12, B)), EXPECTED[12][B])
    assert np.array_equal(_mask(root, _mask_path("val", 3, A)), EXPECTED[3][A])
    assert (root / lvis.CATEGORY_FILE).read_text() == "3 aerosol_can\n12 apron\n"


def test_pickle_without_categories_json_writes_no_category_file(tmp_path: Path) -> None:
    root, _ = _root(tmp_path)
    _matcher_pickle(tmp_path / "lvis_val.pkl", 4)
    prepare_lvis.prepare(root, pickles={"val": tmp_path / "lvis_val.pkl"}, workers=1,
                         progress=False)
    assert (root / lvis.LIST_FILES["val"]).is_file()
    assert not (root / lvis.CATEGORY_FILE).exists()


class _Payload:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_unpickler_refuses_code_and_runs_none(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "lvis_val.pkl"
    evil.write_bytes(pickle.dumps({1: {"val2017/x.jpg": {"annotations": [
        {"segmentation": _Payload(f"touch {marker}")}]}}}))
    with pytest.raises(pickle.UnpicklingError, match=r"lvis_val\.pkl.*system"):
        load_pickle(evil)
    root, _ = _root(tmp_path)
    assert prepare_lvis.main(["--root", str(root), "--val-pickle", str(evil),
                              "--no-progress"]) == 2
    assert not marker.exists() and not (root / lvis.LIST_FILES["val"]).exists()


def test_resume_keeps_masks_unless_overwrite(tmp_path: Path) -> None:
    root, source = _root(tmp_path)
    prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    target = root / _mask_path("val", 12, A)
    cv2.imwrite(str(target), np.zeros(SIZES[A], np.uint8))  # stands for an older mask
    counts = prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    assert counts["val"]["written"] == 0 and counts["val"]["kept"] == 4
    assert not _mask(root, _mask_path("val", 12, A)).any()
    counts = prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False,
                                  overwrite=True)
    assert counts["val"]["written"] == 4
    assert np.array_equal(_mask(root, _mask_path("val", 12, A)), EXPECTED[12][A])


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_interrupted_run_leaves_no_list_and_no_temp_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root, source = _root(tmp_path)
    stray = root / "masks/val/3/.000000000139.png.abc.tmp"  # left by a killed worker
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"\x89PNG")
    real = prepare_lvis.write_mask

    def dies_at_the_third(path: Path, mask: np.ndarray) -> None:
        dies_at_the_third.calls += 1
        if dies_at_the_third.calls == 3:  # killed mid-write: half a temp file left behind
            path.parent.mkdir(parents=True, exist_ok=True)
            Path(path.parent, f".{path.name}.xyz.tmp").write_bytes(b"\x89PN")
            raise KeyboardInterrupt
        real(path, mask)

    def interrupted(**kwargs) -> None:
        dies_at_the_third.calls = 0
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(prepare_lvis, "write_mask", dies_at_the_third)
            prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False,
                                 **kwargs)
        assert _temp_files(root) == []
        assert not (root / lvis.LIST_FILES["val"]).exists()

    interrupted()
    assert len(list(root.rglob("*.png"))) == 2
    counts = prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    assert (counts["val"]["written"], counts["val"]["kept"]) == (2, 2)
    assert len(_lines(root)) == 4
    interrupted(overwrite=True)  # the list of the complete run goes too


def test_missing_image_is_named(tmp_path: Path) -> None:
    root, source = _root(tmp_path)
    (root / B).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images missing.*000000000285\.jpg"):
        prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    assert not (root / lvis.LIST_FILES["val"]).exists() and not (root / "masks").exists()
    prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False,
                         image_check=False)  # the json gives the sizes
    assert len(_lines(root)) == 4


def test_pickle_polygons_need_their_image(tmp_path: Path) -> None:
    root, _ = _root(tmp_path)
    _matcher_pickle(tmp_path / "lvis_val.pkl", 4)
    (root / B).unlink()
    with pytest.raises(FileNotFoundError, match=r"category 12, image coco/train2017/0+285\.jpg"):
        prepare_lvis.prepare(root, pickles={"val": tmp_path / "lvis_val.pkl"}, workers=1,
                             progress=False, image_check=False)


def _broken(change) -> dict:
    data = _json()
    change(data)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][3].update(segmentation="M 1 2 L 3 4"),
     r"lvis_v1_val\.json: annotation 4: unknown segmentation type str"),
    (lambda d: d["annotations"][1].update(segmentation={"counts": [1, 2]}),
     r"annotation 2: unknown segmentation type dict"),
    (lambda d: d["annotations"][2].update(image_id=999),
     r"annotation 3 refers to unknown image id 999"),
    (lambda d: d["annotations"][0].update(category_id=1204),
     r"annotation 1: category id 1204 is not one of LVIS v1's"),
    (lambda d: d["annotations"][4].pop("segmentation"), r"annotation 5 lacks segmentation"),
    (lambda d: d.pop("categories"), r"lvis_v1_val\.json .*lacks categories"),
    (lambda d: d["images"][1].pop("coco_url"), r"image 285: cannot tell the image's folder"),
])
def test_json_errors_name_the_file_and_the_entry(tmp_path: Path, change, message: str) -> None:
    root, source = _root(tmp_path, _broken(change))
    with pytest.raises(ValueError, match=message):
        prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    assert not (root / lvis.LIST_FILES["val"]).exists()


def test_rle_of_another_size_is_refused(tmp_path: Path) -> None:
    root, source = _root(tmp_path, _broken(lambda d: d["annotations"][1].update(
        segmentation=_compressed(np.ones((6, 8), bool)))))
    with pytest.raises(ValueError, match=r"annotation 2: RLE size \[6, 8\], its image 5x7"):
        prepare_lvis.prepare(root, jsons={"val": source}, workers=1, progress=False)
    _matcher_pickle(tmp_path / "lvis_val.pkl", 4)  # pickles: checked against the image file
    data = load_pickle(tmp_path / "lvis_val.pkl")
    data[3]["val2017/000000000139.jpg"]["annotations"][0]["segmentation"] = _compressed(
        np.ones((5, 7), bool))
    (tmp_path / "lvis_val.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=r"category 3, image coco/val2017/0+139\.jpg, annotation "
                                         r"0: RLE size \[5, 7\], the image 6x8"):
        prepare_lvis.prepare(root, pickles={"val": tmp_path / "lvis_val.pkl"}, workers=1,
                             progress=False)


def test_cli_exit_codes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, source = _root(tmp_path)
    module = script_module(REPO / "scripts" / "prepare_lvis.py")
    assert module is prepare_lvis
    with caplog.at_level(logging.INFO, logger="prepare_lvis"):
        assert module.main(["--root", str(root), "--val-json", str(source), "--workers", "1",
                            "--no-progress"]) == 0
    assert "val: 2 categories, 4 (category, image) pairs; masks written 4, kept 0" in caplog.text
    assert len(_lines(root)) == 4
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="prepare_lvis"):
        assert module.main(["--root", str(root), "--train-json",
                            str(tmp_path / "absent.json")]) == 2
    assert "error: LVIS source file not found" in caplog.text and "absent.json" in caplog.text
    for args in ([], ["--val-json", "a.json", "--val-pickle", "b.pkl"]):
        with pytest.raises(SystemExit) as exit_:
            module.main(["--root", str(root), *args])
        assert exit_.value.code == 2
