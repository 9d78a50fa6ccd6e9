"""The evaluation protocols: the releases' exact episode sequence (against episodes recorded
from the authors' own dataset code), our seeded sequence, and the rules both share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fssam.data import build_dataset, collate_episodes
from fssam.data.episodic import EpisodicDataset
from fssam.data.protocol import (release_base_seeds, release_episodes, seeded_episodes,
                                 usable_classes)
from fssam.data.sources import ImageRecord, build_image_list, class_index
from fssam.tools.toy import make_toy_coco, make_toy_pascal

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_episodes" / \
    "release_episodes.json"
RECORDED = json.loads(FIXTURE.read_text())
MAKERS = {"pascal": make_toy_pascal, "coco": make_toy_coco}


def number(path: str) -> int:
    """The number of a synthetic image name (``2012_000079`` -> 79)."""
    return int(Path(path).stem.rsplit("_", 1)[1])


@pytest.fixture(scope="module")
def recorded_roots(tmp_path_factory) -> dict[str, Path]:
    """The synthetic roots the release's episodes were recorded on (small objects included,
    so that some episodes take a class that is present but not eligible)."""
    roots = {}
    for dataset, settings in RECORDED["roots"].items():
        roots[dataset] = tmp_path_factory.mktemp(dataset)
        MAKERS[dataset](roots[dataset], workers=2, **settings)
    return roots


def val_records(root: Path, dataset: str, cache: Path, order: list[int] | None
                ) -> list[ImageRecord]:
    val_list = None
    if order is not None:
        names = [f"COCO_val2014_{n:012d}" for n in order]
        val_list = cache / "val_order.txt"
        val_list.write_text("".join(f"val2014/{s}.jpg annotations/val2014/{s}.png\n"
                                    for s in names))
    return build_image_list(dataset=dataset, root=str(root), fold=0, mode="val",
                            val_list=None if val_list is None else str(val_list),
                            cache_dir=str(cache), workers=2)


def test_release_sequences_equal_the_recorded_ones(recorded_roots, tmp_path) -> None:
    for dataset, expected in RECORDED["list_fingerprints"].items():
        records = val_records(recorded_roots[dataset], dataset, tmp_path, None)
        rows = sorted([number(r.image), list(r.classes), list(r.present)] for r in records)
        found = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
        assert found == expected, (f"the synthetic {dataset} root differs from the one the "
                                   f"release's episodes were recorded on (toy generator changed?)")
    small_class_episodes = 0
    for run in RECORDED["runs"]:
        records = val_records(recorded_roots[run["dataset"]], run["dataset"], tmp_path,
                              run["val_order"])
        episodes = release_episodes(records, shot=run["shot"], num_episodes=len(run["episodes"]),
                                    seed=run["seed"], workers=run["workers"])
        ours = [[number(records[e.query].image), e.class_id,
                 [number(records[j].image) for j in e.supports]] for e in episodes]
        label = f"{run['dataset']} {run['shot']}-shot {run['workers']} workers"
        mismatch = next((i for i, (a, b) in enumerate(zip(ours, run["episodes"])) if a != b), None)
        assert mismatch is None, (label, mismatch, ours[mismatch], run["episodes"][mismatch])
        small_class_episodes += sum(e.class_id not in records[e.query].classes for e in episodes)
    assert small_class_episodes > 0  # the recorded runs exercise the present-class rule


def test_release_worker_count_changes_the_sequence() -> None:
    records = [ImageRecord(f"/x/{i}.jpg", f"/x/{i}.png", (1, 2)) for i in range(12)]
    sequences = {w: release_episodes(records, shot=2, num_episodes=30, seed=321, workers=w)
                 for w in (0, 2, 8)}
    assert sequences[0] != sequences[2] != sequences[8]
    # each pass walks the list in order, whatever the worker count
    for episodes in sequences.values():
        assert [e.query for e in episodes] == [i % 12 for i in range(30)]


def test_release_base_seeds_are_torch_global_generator_draws() -> None:
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(321)
        expected = [int(torch.empty((), dtype=torch.int64).random_().item()) for _ in range(3)]
    finally:
        torch.random.set_rng_state(state)
    assert release_base_seeds(321, 3) == expected


def test_release_stops_where_the_release_would_never_finish() -> None:
    # class 2 is present in image 0 but eligible only there: the release would loop for ever
    records = [ImageRecord("/x/0.jpg", "/x/0.png", (1, 2), (1, 2)),
               ImageRecord("/x/1.jpg", "/x/1.png", (1,), (1,)),
               ImageRecord("/x/2.jpg", "/x/2.png", (1,), (1,))]
    with pytest.raises(ValueError, match="class 2 for /x/0.png.*would never finish"):
        release_episodes(records, shot=1, num_episodes=50, seed=321, workers=0)


def test_seeded_protocol_draws_present_classes_and_leaves_out_unusable_ones() -> None:
    records = [ImageRecord("/x/0.jpg", "/x/0.png", (1,), (1, 2, 3)),
               ImageRecord("/x/1.jpg", "/x/1.png", (1, 2), (1, 2)),
               ImageRecord("/x/2.jpg", "/x/2.png", (1, 2), (1, 2)),
               ImageRecord("/x/3.jpg", "/x/3.png", (1,), (1, 3))]
    # class 3 is present in images 0 and 3 but eligible nowhere: never an episode class
    assert usable_classes(records, class_index(records), 1) == [(1, 2), (1, 2), (1, 2), (1,)]
    episodes = seeded_episodes(records, shot=1, num_episodes=400, seed=4)
    assert {(e.query, e.class_id) for e in episodes} == {
        (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1)}
    for e in episodes:
        assert e.query not in e.supports and all(e.class_id in records[j].classes
                                                 for j in e.supports)


def test_small_class_can_be_the_episode_class(pascal_root: Path, tmp_path: Path) -> None:
    # 2007_000003 holds class 1 (eligible) and class 2 (2047 px: present, not eligible);
    # class 3 is present (small) in 2007_000007 only and eligible nowhere: never drawn.
    dataset = build_dataset(dataset="pascal", root=str(pascal_root), fold=0, shot=1,
                            mode="val", image_size=32, num_episodes=300, seed=321,
                            cache_dir=str(tmp_path))
    pairs = {(Path(dataset.records[e.query].image).stem, e.class_id) for e in dataset.episodes}
    assert ("2007_000003", 2) in pairs and ("2007_000003", 1) in pairs
    assert all(c != 3 for _, c in pairs)


def test_training_items_draw_among_present_classes() -> None:
    records = [ImageRecord("/x/0.jpg", "/x/0.png", (6,), (6, 7)),  # 7 small here
               ImageRecord("/x/1.jpg", "/x/1.png", (7,), (7,)),
               ImageRecord("/x/2.jpg", "/x/2.png", (6, 7), (6, 7)),
               ImageRecord("/x/3.jpg", "/x/3.png", (6,), (6,))]
    dataset = EpisodicDataset(records=records, class_ids=[6, 7, 8], shot=1, mode="train")
    drawn = set()
    for epoch in range(40):
        dataset.set_epoch(epoch)
        e = dataset.sample(0, np.random.default_rng([dataset.seed, epoch, 0]))
        assert 0 not in e.supports and e.class_id in records[e.supports[0]].classes
        drawn.add(e.class_id)
    assert drawn == {6, 7}


@pytest.mark.parametrize("protocol", ["seeds", "release"])
def test_evaluation_items_are_independent_of_loader_workers(recorded_roots, tmp_path, protocol):
    dataset = build_dataset(dataset="pascal", root=str(recorded_roots["pascal"]), fold=0, shot=2,
                            mode="val",
                            image_size=32, num_episodes=10, seed=321, cache_dir=str(tmp_path),
                            protocol=protocol, release_workers=32)
    runs = []
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=3, num_workers=workers,
                            collate_fn=collate_episodes)
        runs.append([(b["query_id"], b["support_ids"], b["class_id"].tolist(),
                      b["support_masks"].sum().item()) for b in loader])
    assert runs[0] == runs[1]


def test_fingerprint_names_the_sequence(recorded_roots, tmp_path) -> None:
    def fingerprint(**kwargs):
        settings = {"dataset": "pascal", "root": str(recorded_roots["pascal"]), "fold": 0,
                    "shot": 1,
                    "mode": "val", "image_size": 32, "num_episodes": 20, "seed": 321,
                    "cache_dir": str(tmp_path), **kwargs}
        return build_dataset(**settings).fingerprint()

    base = fingerprint(protocol="release", release_workers=2)
    assert base == fingerprint(protocol="release", release_workers=2)
    assert len({base, fingerprint(protocol="release", release_workers=4),
                fingerprint(protocol="seeds"), fingerprint(protocol="release", seed=1,
                                                           release_workers=2)}) == 4
