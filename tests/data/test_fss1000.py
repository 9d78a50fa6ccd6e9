"""FSS-1000 (HSNet's protocol) on its synthetic copy: class lists and ids, mask reading,
the list order, HSNet's test episodes, our seeded episodes, the items."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data import benchmarks, build_dataset
from fssam.data.benchmarks import fss1000
from fssam.data.protocol import hsnet_episodes, seeded_episodes
from fssam.data.sources import build_image_list, read_binary_mask
from fssam.tools.toy_fss import make_toy_fss

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fss1000"


@pytest.fixture(scope="module")
def fss_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 240 test classes x 10 images (HSNet's test split), 32x32."""
    root = tmp_path_factory.mktemp("fss")
    make_toy_fss(root, splits=("test",), size=(32, 32))
    return root


def test_class_lists_and_ids() -> None:
    sizes = {s: len(fss1000.class_names(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 520, "val": 240, "test": 240}
    every = [n for s in sizes for n in fss1000.class_names(s)]
    assert len(set(every)) == 1000 and not any(n != n.strip() for n in every)
    assert list(fss1000.class_names("test")) == sorted(fss1000.class_names("test"))
    ids = fss1000.class_ids()
    # HSNet's id (sorted index + 0 / 520 / 760) plus one
    assert (ids["abe's_flyingfish"], ids["wooden_spoon"]) == (761, 1000)
    assert min(ids[n] for n in fss1000.class_names("val")) == 521
    assert list(fss1000.subset_classes("train")) == list(range(1, 521))
    bench = benchmarks.get("fss1000")
    assert (bench.subsets, bench.num_folds, bench.episodes, bench.metric_size) == (
        ("train", "val", "test"), 1, 2400, 400)
    assert bench.novel_classes(0, "interleaved") == list(range(521, 761))
    with pytest.raises(ValueError, match="fold 1 for fss1000"):
        bench.classes("test", 1, "")


def test_mask_is_grey_at_least_128_and_takes_the_image_size(tmp_path: Path) -> None:
    grey = np.array([[0, 127], [128, 255]], np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    assert read_binary_mask(str(tmp_path / "grey.png"), (2, 2)).tolist() == [[0, 0], [1, 1]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 255, 255)   # white: object
    rgb[0, 1] = (0, 0, 255)       # pure red (BGR) is grey 76: background
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    assert read_binary_mask(str(tmp_path / "rgb.png"), (2, 2)).tolist() == [[1, 0], [0, 0]]
    big = read_binary_mask(str(tmp_path / "grey.png"), (4, 6))  # resized, nearest
    assert big.shape == (4, 6) and set(np.unique(big)) == {0, 1}
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_binary_mask(str(tmp_path / "nothere.png"), (2, 2))


def test_test_list_order_and_layouts(fss_root: Path, tmp_path: Path) -> None:
    records = build_image_list(dataset="fss1000", root=str(fss_root), fold=0, mode="test",
                               cache_dir=tmp_path)
    assert len(records) == 2400
    first = [os.path.basename(r.image) for r in records[:10]]
    assert first == ["1.jpg", "10.jpg"] + [f"{n}.jpg" for n in range(2, 10)]
    assert records[0].classes == (761,) and records[-1].classes == (1000,)
    assert records[0].label.endswith("abe's_flyingfish/1.png")
    # Matcher's layout: the class folders in data/
    nested = tmp_path / "nested"
    (nested / "data").mkdir(parents=True)
    for name in fss1000.class_names("test"):
        os.symlink(fss_root / name, nested / "data" / name)
    again = build_image_list(dataset="fss1000", root=str(nested), fold=0, mode="test",
                             cache_dir=tmp_path)
    assert [r.classes for r in again] == [r.classes for r in records]


def test_jpeg_extras_are_skipped_and_missing_folders_named(fss_root: Path,
                                                           tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(fss_root, root)
    shutil.copy(root / "accordion" / "1.jpg", root / "accordion" / "11.jpeg")
    records = build_image_list(dataset="fss1000", root=str(root), fold=0, mode="test",
                               cache_dir=tmp_path, rebuild=True)
    assert len(records) == 2400
    shutil.rmtree(root / "accordion")
    with pytest.raises(FileNotFoundError, match="1 of the 240 test class folders missing.*"
                                                "accordion"):
        build_image_list(dataset="fss1000", root=str(root), fold=0, mode="test",
                         cache_dir=tmp_path, rebuild=True)


def _fixture(shot: int) -> dict[int, tuple[int, str, str, list[str]]]:
    lines = (FIXTURES / f"hsnet_test_episodes_{shot}shot.tsv").read_text().splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return {int(i): (int(c), name, q, s.split(",")) for i, c, name, q, s in rows}


@pytest.mark.parametrize("shot", [1, 5])
def test_hsnet_episodes_are_hsnets(fss_root: Path, tmp_path: Path, shot: int) -> None:
    records = build_image_list(dataset="fss1000", root=str(fss_root), fold=0, mode="test",
                               cache_dir=tmp_path)
    episodes = hsnet_episodes(records, shot=shot, num_episodes=2400, seed=0)
    assert [e.query for e in episodes] == list(range(2400))
    for index, (class_id, name, query, supports) in _fixture(shot).items():
        e = episodes[index]
        assert e.class_id == class_id + 1
        assert os.path.basename(os.path.dirname(records[e.query].image)) == name
        assert os.path.basename(records[e.query].image) == query
        assert [os.path.basename(records[j].image) for j in e.supports] == supports
    assert episodes == hsnet_episodes(records, shot=shot, num_episodes=2400, seed=0)
    if shot == 5:  # HSNet keeps a support drawn twice
        assert any(len(set(e.supports)) < 5 for e in episodes)
    assert all(e.query not in e.supports for e in episodes)


def test_hsnet_rule_needs_the_ten_images(fss_root: Path, tmp_path: Path) -> None:
    records = build_image_list(dataset="fss1000", root=str(fss_root), fold=0, mode="test",
                               cache_dir=tmp_path)
    without = [r for r in records if not r.image.endswith("abe's_flyingfish/3.jpg")]
    with pytest.raises(ValueError, match=r"support 3.jpg of .*abe's_flyingfish"):
        hsnet_episodes(without, shot=1, num_episodes=5, seed=0)


def test_seeded_episodes_are_distinct_and_deterministic(fss_root: Path,
                                                        tmp_path: Path) -> None:
    records = build_image_list(dataset="fss1000", root=str(fss_root), fold=0, mode="test",
                               cache_dir=tmp_path)
    a = seeded_episodes(records, shot=5, num_episodes=300, seed=7)
    assert a == seeded_episodes(records, shot=5, num_episodes=300, seed=7)
    assert a != seeded_episodes(records, shot=5, num_episodes=300, seed=8)
    for e in a:
        assert len(set(e.supports)) == 5 and e.query not in e.supports
        assert {records[j].classes for j in e.supports} == {(e.class_id,)}


def test_items_score_at_400_and_read_the_test_classes(fss_root: Path, tmp_path: Path) -> None:
    data = build_dataset(dataset="fss1000", root=str(fss_root), fold=0, shot=2, mode="val",
                         image_size=64, num_episodes=3, seed=0, protocol="release",
                         cache_dir=str(tmp_path), subset="test")
    assert data.class_ids == list(range(761, 1001))
    item = data[0]
    assert item["query_img"].shape == (3, 64, 64) and item["support_imgs"].shape == (2, 3, 64, 64)
    assert item["query_label"].shape == (400, 400)
    assert set(item["query_label"].unique().tolist()) == {0, 1}
    assert set(item["support_masks"].unique().tolist()) == {0, 1}
    assert int(item["class_id"]) == 761
