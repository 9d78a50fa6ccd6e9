"""Episodic evaluation on the micro SAM 2 + tiny DINOv2 and the synthetic PASCAL dataset.

Batch size, the prior cache and overlays must not change the metrics; every episode is
scored exactly once; the prior-only baseline scores the thresholded prior.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fssam.data import build_dataset
from fssam.data.folds import novel_classes
from fssam.engine.evaluate import (
    EpisodeShardSampler,
    PriorOnly,
    build_eval_loader,
    run_evaluation,
    summarize_seeds,
)
from fssam.engine.evaluator import SegmentationEvaluator, logits_to_prediction
from fssam.contract import sigmoid_foreground
from fssam.engine.prior_cache import PriorCache
from fssam.models.fssam import build_model

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
SIZE = 128
EPISODES = 12
CLASSES = novel_classes("pascal", 0)
TINY_DINO = {"embed_dim": 32, "depth": 2, "num_heads": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> torch.utils.data.Dataset:
    return build_dataset(
        dataset="pascal",
        root=str(toy_root),
        fold=0,
        shot=1,
        mode="val",
        image_size=SIZE,
        num_episodes=EPISODES,
        seed=321,
        cache_dir=str(tmp_path_factory.mktemp("lists")),
    )


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        sam2_config=str(PARITY / "sam2_micro_v1.yaml"),
        sam2_checkpoint=str(PARITY / "micro_weights.pt"),
        image_size=SIZE,
        dino_checkpoint=None,
        dino_input_size=56,
        dino_kwargs=TINY_DINO,
    )


def evaluate(model, dataset, batch_size: int = 1, **kwargs) -> dict:
    loader = build_eval_loader(dataset, batch_size=batch_size, num_workers=0)
    return run_evaluation(model, loader, class_ids=CLASSES, device="cpu", progress=False, **kwargs)


@pytest.mark.parametrize("num_episodes", [0, 1, 7, 10])
def test_shards_partition_the_episodes(num_episodes: int) -> None:
    for world in (1, 2, 3, 4):
        shards = [
            list(EpisodeShardSampler(num_episodes, rank=r, world_size=world)) for r in range(world)
        ]
        flat = sorted(i for shard in shards for i in shard)
        assert flat == list(range(num_episodes))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert [
            len(EpisodeShardSampler(num_episodes, rank=r, world_size=world)) for r in range(world)
        ] == list(map(len, shards))
    with pytest.raises(ValueError):
        EpisodeShardSampler(5, rank=2, world_size=2)


def test_loader_keeps_order_and_original_labels(dataset) -> None:
    batches = list(build_eval_loader(dataset, batch_size=5, num_workers=0))
    assert [len(b["query_label"]) for b in batches] == [5, 5, 2]
    assert torch.cat([b["episode"] for b in batches]).tolist() == list(range(EPISODES))
    assert batches[0]["query_img"].shape == (5, 3, SIZE, SIZE)
    assert any(tuple(label.shape) != (SIZE, SIZE) for label in batches[0]["query_label"])
    with pytest.raises(ValueError, match="batch_size"):
        build_eval_loader(dataset, batch_size=0, num_workers=0)


def assert_same_metrics(got: dict, want: dict) -> None:
    """Equal up to pixels that float rounding of batched kernels may flip (logits move by
    ~1e-6): 1e-3 IoU points, far below any real error (a wrong episode or resize)."""
    assert got["num_episodes"] == want["num_episodes"]
    assert got["missing_classes"] == want["missing_classes"]
    assert set(got["class_iou"]) == set(want["class_iou"])
    for key in ("miou", "fbiou", "fg_iou", "bg_iou"):
        assert got[key] == pytest.approx(want[key], abs=1e-3), key
    for cid, iou in want["class_iou"].items():
        assert got["class_iou"][cid] == pytest.approx(iou, abs=1e-3), cid


def test_batch_size_does_not_change_the_metrics(model, dataset) -> None:
    one = evaluate(model, dataset, batch_size=1)
    four = evaluate(model, dataset, batch_size=4)
    assert one["num_episodes"] == EPISODES
    assert 0 < one["fbiou"] < 100
    assert_same_metrics(four, one)


def test_cached_priors_give_the_same_metrics(model, dataset, tmp_path, monkeypatch) -> None:
    uncached = evaluate(model, dataset, batch_size=4)
    settings = {
        "dataset": "pascal",
        "fold": 0,
        "shot": 1,
        "episodes": dataset.fingerprint(),
        "image_size": SIZE,
        "support_annotation": "mask",
        "coco_folds": None,
        "dino_variant": "vitb14",
        "dino_input_size": 56,
        "dino_weights": "test",
    }
    cache = PriorCache(tmp_path, settings)
    filling = evaluate(model, dataset, batch_size=4, prior_cache=cache)
    assert len(list(cache.dir.glob("*.pt"))) == EPISODES
    with monkeypatch.context() as patch:
        patch.setattr(model.prior, "forward", lambda *a, **k: pytest.fail("DINOv2 ran"))
        cached = evaluate(model, dataset, batch_size=3, prior_cache=cache)
    assert filling == uncached
    assert_same_metrics(cached, uncached)


def test_overlays_for_the_first_episodes(model, dataset, tmp_path) -> None:
    evaluate(model, dataset, batch_size=4, vis_dir=tmp_path / "vis", num_vis=5)
    names = sorted(p.name for p in (tmp_path / "vis").glob("*.png"))
    assert len(names) == 5
    assert [n.split("_")[1] for n in names] == [f"{i:05d}" for i in range(5)]


def test_mode_is_restored_and_eval_used(model, dataset) -> None:
    seen = []
    handle = model.register_forward_pre_hook(
        lambda module, args: seen.append((module.training, torch.is_grad_enabled()))
    )
    model.train()
    try:
        evaluate(model, dataset, batch_size=6)
    finally:
        handle.remove()
    assert seen == [(False, False), (False, False)]
    assert model.training and model.sam2.memory_attention.training
    model.eval()


def test_prior_only_scores_the_thresholded_prior(model, dataset) -> None:
    baseline, expected = PriorOnly(model), SegmentationEvaluator(CLASSES)
    for batch in build_eval_loader(dataset, batch_size=4, num_workers=0):
        with torch.no_grad():
            prior_fg, _ = model.prior(
                batch["query_img"], batch["support_imgs"], batch["support_masks"]
            )
            logits = baseline(batch)["logits"]
        for i, label in enumerate(batch["query_label"]):
            size = tuple(label.shape)
            up = F.interpolate(prior_fg[i : i + 1], size=size, mode="bilinear", align_corners=True)[
                0, 0
            ]
            expected.update(up >= 0.5, label, int(batch["class_id"][i]))
            # Equal but where float rounding decides (|prior - 0.5| below 1e-6).
            differ = logits_to_prediction(logits[i], size, sigmoid_foreground) != (up >= 0.5)
            assert not (differ & ((up - 0.5).abs() > 1e-6)).any()
    got, want = evaluate(baseline, dataset, batch_size=4), expected.compute()
    assert got["miou"] == pytest.approx(want["miou"], abs=0.01)
    assert got["fbiou"] == pytest.approx(want["fbiou"], abs=0.01)
    assert got["miou"] != pytest.approx(evaluate(model, dataset, batch_size=4)["miou"], abs=0.01)


def test_summary_over_seeds_is_mean_and_std() -> None:
    per_seed = {
        1: {"miou": 40.0, "fbiou": 60.0, "class_iou": {1: 30.0, 2: 50.0}},
        2: {"miou": 50.0, "fbiou": 70.0, "class_iou": {1: 50.0}},
    }
    summary = summarize_seeds(per_seed)
    assert summary["seeds"] == [1, 2]
    assert summary["miou"] == {"mean": 45.0, "std": 5.0}
    assert summary["fbiou"] == {"mean": 65.0, "std": 5.0}
    assert summary["class_iou"] == {1: {"mean": 40.0, "std": 10.0}, 2: {"mean": 50.0, "std": 0.0}}
    assert math.isnan(
        summarize_seeds({3: {"miou": math.nan, "fbiou": 1.0, "class_iou": {}}})["miou"]["mean"]
    )
    with pytest.raises(ValueError):
        summarize_seeds({})
