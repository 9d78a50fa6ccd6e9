"""LVIS-92i on hand-built lists: folds computed from the val list and the shot (Matcher's
rule), training categories, Matcher's test episodes against a replay of its loop, our
seeded episodes, the list cache, errors naming the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data import benchmarks, build_dataset
from fssam.data.benchmarks import lvis
from fssam.data.folds import fold_classes
from fssam.data.protocol import matcher_episodes
from fssam.data.sources import build_image_list
from fssam.data.train_lists import resolve_train_list

from .conftest import cycling_replay

# val list: (category, images) in list order; ids deliberately not ascending
VAL = [(40, 3), (7, 1), (23, 6), (5, 2), (31, 7), (12, 9), (2, 1), (18, 4), (9, 6), (27, 2),
       (33, 8), (14, 3), (3, 6), (21, 7), (36, 2), (11, 6), (1, 9), (29, 6), (16, 5), (8, 7),
       (25, 6), (30, 6), (6, 6)]
TRAIN = [(1, 3), (2, 2), (3, 8), (5, 1), (6, 6), (7, 4), (8, 2), (50, 6), (51, 1), (12, 6)]
# eligible at shot 1 (more than 1 image), in list order: 21 of them -> 2 per fold
SHOT1 = [40, 23, 5, 31, 12, 18, 9, 27, 33, 14, 3, 21, 36, 11, 1, 29, 16, 8, 25, 30, 6]
# more than 5 images: 14 of them -> 1 per fold
SHOT5 = [23, 31, 12, 9, 33, 3, 21, 11, 1, 29, 8, 25, 30, 6]


def write_split(root: Path, split: str, entries: list[tuple[int, int]]) -> None:
    lines = []
    folder = "val2017" if split == "val" else "train2017"
    for category, count in entries:
        for n in range(count):
            stem = f"{category:06d}{n:06d}"
            image = root / lvis.IMAGE_DIR / folder / f"{stem}.jpg"
            mask = root / lvis.MASK_DIR / split / str(category) / f"{stem}.png"
            for path in (image.parent, mask.parent):
                path.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(category * 100 + n)
            cv2.imwrite(str(image), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
            label = np.zeros((24, 24), np.uint8)
            label[4:16, 5:5 + 1 + n % 10] = 255
            cv2.imwrite(str(mask), label)
            lines.append(f"{image.relative_to(root)} {mask.relative_to(root)}\n")
    (root / lvis.LIST_FILES[split]).write_text("".join(lines))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lvis")
    write_split(out, "val", VAL)
    write_split(out, "train", TRAIN)
    return out


def test_eligible_lists_of_the_fixture() -> None:  # the fixture says what it means
    counts = dict(VAL)
    assert SHOT1 == [c for c, _ in VAL if counts[c] > 1]
    assert SHOT5 == [c for c, _ in VAL if counts[c] > 5]


@pytest.mark.parametrize("fold", range(10))
def test_folds_follow_the_val_list_order_and_the_shot(root: Path, fold: int) -> None:
    bench = benchmarks.get("lvis")
    one = bench.classes("val", fold, "", root=str(root), shot=1)
    assert one == [SHOT1[fold], SHOT1[fold + 10]]  # 21 eligible: 2 per fold, the 21st unused
    five = bench.classes("val", fold, "", root=str(root), shot=5)
    assert five == [SHOT5[fold]]  # 14 eligible: 1 per fold
    assert bench.novel_classes(fold, "", root=str(root), shot=5) == five
    train = bench.classes("train", fold, "", root=str(root), shot=1)
    # training: categories of the train list with more than `shot` images, minus the fold's
    assert train == [c for c, n in TRAIN if n > 1 and c not in one]


def test_folds_partition_the_evaluated_categories(root: Path) -> None:
    folds = [lvis.fold_of(lvis.category_images(
        lvis.pairs(str(root), "val", resolve_train_list("lvis", None))), f, 1) for f in range(10)]
    flat = [c for fold in folds for c in fold]
    assert len(flat) == len(set(flat)) == 20 and set(flat) < set(SHOT1)


def test_too_few_categories_for_ten_folds_is_an_error(tmp_path: Path) -> None:
    write_split(tmp_path, "val", VAL[:8])
    write_split(tmp_path, "train", TRAIN)
    with pytest.raises(ValueError, match="at least 10 val categories with more than 1 images"):
        fold_classes("lvis", "val", 0, root=str(tmp_path), shot=1)


def test_fold_classes_need_the_root_and_the_shot() -> None:
    with pytest.raises(ValueError, match="give the dataset root and the shot"):
        fold_classes("lvis", "val", 0)


def matcher_replay(root: Path, fold_categories: list[int], shot: int, count: int
                   ) -> list[tuple[int, str, tuple[str, ...]]]:
    """Matcher's test loop over the fold's categories in fold order, the images of a
    category in the order of the val list."""
    by_category: dict[int, list[str]] = {}
    for line in (root / lvis.LIST_FILES["val"]).read_text().splitlines():
        image, mask = line.split()
        by_category.setdefault(int(Path(mask).parent.name), []).append(image)
    return cycling_replay(by_category, fold_categories, shot, count)


@pytest.mark.parametrize("shot", [1, 5])
def test_release_row_is_matchers_sequence(root: Path, tmp_path: Path, shot: int) -> None:
    data = build_dataset(dataset="lvis", root=str(root), fold=3, shot=shot, mode="val",
                         num_episodes=lvis.EPISODES, seed=0, protocol="release",
                         cache_dir=str(tmp_path), image_size=32)
    assert len(data) == 2300 and len(data.episodes) == 2300
    fold = fold_classes("lvis", "val", 3, root=str(root), shot=shot)
    assert data.class_ids == fold
    ours = [(e.class_id, str(Path(data.records[e.query].image).relative_to(root)),
             tuple(str(Path(data.records[s].image).relative_to(root)) for s in e.supports))
            for e in data.episodes]
    assert ours == matcher_replay(root, fold, shot, 2300)


def test_matcher_rule_cycles_the_classes_in_list_order(root: Path, tmp_path: Path) -> None:
    records = build_image_list(dataset="lvis", root=str(root), fold=0, mode="val",
                               cache_dir=tmp_path, shot=1)
    episodes = matcher_episodes(records, shot=1, num_episodes=6, seed=0)
    assert [e.class_id for e in episodes] == [40, 3, 40, 3, 40, 3]  # not ascending


def test_items_hold_the_category_mask_at_matchers_size(root: Path, tmp_path: Path) -> None:
    data = build_dataset(dataset="lvis", root=str(root), fold=1, shot=1, mode="val",
                         num_episodes=4, seed=0, protocol="seeds", cache_dir=str(tmp_path),
                         image_size=32)
    assert data.metric_size == 518
    item = data[0]
    episode = data.episodes[0]
    mask = cv2.imread(data.records[episode.query].label, cv2.IMREAD_GRAYSCALE)
    expected = cv2.resize((mask >= 128).astype(np.uint8), (518, 518),
                          interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(np.asarray(item["query_label"]), expected)


def test_list_cache_is_keyed_by_shot_and_list_content(tmp_path: Path) -> None:
    root = tmp_path / "lvis"
    write_split(root, "val", VAL)
    write_split(root, "train", TRAIN)
    cache = tmp_path / "cache"
    one = build_image_list(dataset="lvis", root=str(root), fold=2, mode="val", cache_dir=cache,
                           shot=1)
    five = build_image_list(dataset="lvis", root=str(root), fold=2, mode="val", cache_dir=cache,
                            shot=5)
    assert {r.classes[0] for r in one} == {5, 36} and {r.classes[0] for r in five} == {12}
    assert len(list(cache.iterdir())) == 2
    # the val list rewritten: the cached lists no longer apply
    write_split(root, "val", VAL[1:] + VAL[:1])
    again = build_image_list(dataset="lvis", root=str(root), fold=2, mode="val",
                             cache_dir=cache, shot=1)
    assert {r.classes[0] for r in again} == {31, 11}
    with pytest.raises(ValueError, match="depend on the shot"):
        build_image_list(dataset="lvis", root=str(root), fold=2, mode="val", cache_dir=cache)


def test_bad_lists_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "lvis"
    write_split(root, "val", VAL)
    write_split(root, "train", TRAIN)
    path = root / lvis.LIST_FILES["val"]
    path.write_text(path.read_text() + "coco/val2017/lonely.jpg\n")
    with pytest.raises(ValueError, match=f"{path}: LVIS-92i list lines are 'image mask'"):
        fold_classes("lvis", "val", 0, root=str(root), shot=1)
    path.write_text("coco/val2017/a.jpg masks/val/abc/a.png\n")
    with pytest.raises(ValueError, match="folder 'abc' is not a class number"):
        fold_classes("lvis", "val", 0, root=str(root), shot=1)
    path.write_text("coco/val2017/a.jpg masks/val/1204/a.png\n")
    with pytest.raises(ValueError, match="category 1204 is outside LVIS v1's 1..1203"):
        fold_classes("lvis", "val", 0, root=str(root), shot=1)
    (root / lvis.LIST_FILES["val"]).unlink()
    with pytest.raises(FileNotFoundError, match="list file not found: .*lvis92i_val.txt"):
        fold_classes("lvis", "val", 0, root=str(root), shot=1)
