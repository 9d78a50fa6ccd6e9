"""The cross-domain test sets (Deepglobe, ISIC2018, Chest X-ray) on their synthetic copies:
layouts, class ids, PATNet's episodes, our seeded ones, the items, the preparation tools."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data import benchmarks, build_dataset
from fssam.data.protocol import patnet_episodes, seeded_episodes
from fssam.data.sources import ImageRecord, build_image_list
from fssam.tools import prepare_deepglobe, prepare_isic
from fssam.tools.toy_crossdomain import make_toy_crossdomain

from .conftest import cycling_replay

NAMES = ("deepglobe", "isic", "lung")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name in NAMES:
        out[name] = tmp_path_factory.mktemp(name)
        make_toy_crossdomain(out[name], name, per_class=6, size=(32, 32))
    return out


def records_of(name: str, root: Path, tmp_path: Path) -> list[ImageRecord]:
    return build_image_list(dataset=name, root=str(root), fold=0, mode="test",
                            cache_dir=tmp_path)


def test_descriptions() -> None:
    for name, classes in (("deepglobe", 6), ("isic", 3), ("lung", 1)):
        bench = benchmarks.get(name)
        assert (bench.num_classes, bench.subsets, bench.episodes, bench.release_seed,
                bench.metric_size, bench.release_rule) == (classes, ("test",), 600, 0, 400,
                                                            "patnet")
        with pytest.raises(ValueError, match=f"unknown mode 'train' for {name}"):
            bench.classes("train", 0, "")


def test_layouts_and_class_ids(roots: dict[str, Path], tmp_path: Path) -> None:
    deepglobe = records_of("deepglobe", roots["deepglobe"], tmp_path)
    assert len(deepglobe) == 72  # each tile in its class folder and its corner's
    assert [r.classes[0] for r in deepglobe] == sorted(r.classes[0] for r in deepglobe)
    first = deepglobe[0]
    assert Path(first.image).parts[-4:] == ("1", "test", "origin", "100_10.jpg")
    assert Path(first.label).parts[-3:] == ("test", "groundtruth", "100_10.png")
    isic = records_of("isic", roots["isic"], tmp_path)
    assert [r.classes[0] for r in isic] == [1] * 6 + [2] * 6 + [3] * 6
    assert isic[0].label.endswith("ISIC2018_Task1_Training_GroundTruth/ISIC_0001000_segmentation.png")
    lung = records_of("lung", roots["lung"], tmp_path)
    pairs = {os.path.basename(r.label): os.path.basename(r.image) for r in lung}
    assert pairs["CHNCXR_0002_0_mask.png"] == "CHNCXR_0002_0.png"
    assert pairs["MCUCXR_0000_0.png"] == "MCUCXR_0000_0.png"  # Montgomery: same name


def test_missing_class_folder_is_named(roots: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "dg"
    (root / "1" / "test" / "origin").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="5 of the 6 deepglobe class folders missing"):
        records_of("deepglobe", root, tmp_path)


def _replay(records: list[ImageRecord], shot: int, num: int) -> list[tuple]:
    """PATNet's sample_episode loop over the classes in ascending order."""
    by_class: dict[int, list[str]] = {}
    for r in records:
        by_class.setdefault(r.classes[0], []).append(r.image)
    return cycling_replay(by_class, sorted(by_class), shot, num)


@pytest.mark.parametrize("shot", [1, 5])
@pytest.mark.parametrize("name", NAMES)
def test_patnet_episodes(roots: dict[str, Path], tmp_path: Path, name: str, shot: int) -> None:
    records = records_of(name, roots[name], tmp_path)
    episodes = patnet_episodes(records, shot=shot, num_episodes=600, seed=0)
    mine = [(e.class_id, records[e.query].image, tuple(records[j].image for j in e.supports))
             for e in episodes]
    assert mine == _replay(records, shot, 600)
    counts = np.bincount([e.class_id for e in episodes])
    assert set(counts[1:]) == {600 // benchmarks.get(name).num_classes}


def test_patnet_rule_needs_two_images_per_class(roots: dict[str, Path], tmp_path: Path) -> None:
    records = records_of("isic", roots["isic"], tmp_path)[:7]  # class 2 has one image
    with pytest.raises(ValueError, match="at least 2 images per class"):
        patnet_episodes(records, shot=1, num_episodes=5, seed=0)


def test_seeded_episodes_and_items(roots: dict[str, Path], tmp_path: Path) -> None:
    records = records_of("isic", roots["isic"], tmp_path)
    a = seeded_episodes(records, shot=2, num_episodes=50, seed=1)
    assert a == seeded_episodes(records, shot=2, num_episodes=50, seed=1)
    assert all(len(set(e.supports)) == 2 and e.query not in e.supports for e in a)
    data = build_dataset(dataset="deepglobe", root=str(roots["deepglobe"]), fold=0, shot=1,
                         mode="val", image_size=48, num_episodes=12, seed=0, protocol="release",
                         cache_dir=str(tmp_path), subset="test")
    item = data[3]
    assert int(item["class_id"]) == 4 and item["query_label"].shape == (400, 400)
    assert set(item["query_label"].unique().tolist()) == {0, 1}


def test_prepare_deepglobe_tiles_keeps_and_matches_colours(tmp_path: Path) -> None:
    source, out = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    mask = np.zeros((60, 60, 3), np.uint8)             # 6 x 6 tiles of 10 px, RGB
    mask[:10, :10] = (255, 255, 0)                     # tile 00: all agriculture: one colour
    mask[:10, 10:20] = (0, 0, 255)                     # tile 01: water...
    mask[:3, 10:20] = (255, 255, 255)                  # ... and 30% barren: kept
    mask[10:20, :10] = (0, 255, 0)                     # tile 10: forest...
    mask[10, 0:4] = (0, 255, 255)                      # ... and 4% urban: dropped
    cv2.imwrite(str(source / "7_sat.jpg"), np.full((60, 60, 3), 90, np.uint8))
    cv2.imwrite(str(source / "7_mask.png"), mask[..., ::-1])
    totals = prepare_deepglobe.prepare(source, out)
    assert totals == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1}  # only tile 01 is kept, in 5 and 6
    water = cv2.imread(str(out / "5" / "test" / "groundtruth" / "7_01.png"), cv2.IMREAD_UNCHANGED)
    assert water.shape == (10, 10) and (water[3:] == 255).all() and (water[:3] == 0).all()
    assert (out / "6" / "test" / "origin" / "7_01.jpg").is_file()
    assert prepare_deepglobe.tiles(2448, 2448)[1][3] == slice(408, 816)
    with pytest.raises(FileNotFoundError, match="no <id>_sat.jpg"):
        prepare_deepglobe.prepare(tmp_path / "out", tmp_path / "x")


def test_prepare_isic_sorts_by_the_csv(tmp_path: Path) -> None:
    base = tmp_path / "ISIC2018_Task1-2_Training_Input"
    base.mkdir()
    for i in range(3):
        (base / f"ISIC_000000{i}.jpg").write_bytes(b"jpg")
    csv = tmp_path / "class_id.csv"
    csv.write_text("ID,Class\nISIC_0000000,nevus\nISIC_0000001,melanoma\n"
                   "ISIC_0000002,seborrheic_keratosis\n")
    assert prepare_isic.sort_images(tmp_path, prepare_isic.read_classes(csv)) == {1: 1, 2: 1, 3: 1}
    assert (base / "3" / "ISIC_0000002.jpg").read_bytes() == b"jpg"
    csv.write_text("ID,Class\nISIC_0000000,mole\n")
    with pytest.raises(ValueError, match="class_id.csv:2: unknown class 'mole'"):
        prepare_isic.read_classes(csv)
