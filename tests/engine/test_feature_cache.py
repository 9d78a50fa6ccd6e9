"""Evaluation reuse (fssam.engine.feature_cache) on the micro SAM 2 + tiny DINOv2.

Cached, cold or warm, evicting or not: logits equal those without reuse bit for bit, and
the metrics are identical. The cache key follows the weights, the image and the dtype.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fssam.data import build_dataset
from fssam.contract import episode_image_ids, image_identity
from fssam.data.folds import novel_classes
from fssam.engine.evaluate import build_eval_loader, run_evaluation
from fssam.engine.feature_cache import FeatureCache, PassMemo
from fssam.engine.lru import GB
from fssam.models.fssam import build_model

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
SIZE = 128
EPISODES = 12
CLASSES = novel_classes("pascal", 0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(sam2_config=str(PARITY / "sam2_micro_v1.yaml"),
                       sam2_checkpoint=str(PARITY / "micro_weights.pt"), image_size=SIZE,
                       dino_checkpoint=None, dino_input_size=56,
                       dino_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2})


@pytest.fixture(scope="module")
def datasets(reuse_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    lists = tmp_path_factory.mktemp("lists")
    return {shot: build_dataset(dataset="pascal", root=str(reuse_root), fold=0, shot=shot,
                                mode="val", image_size=SIZE, num_episodes=EPISODES, seed=321,
                                cache_dir=str(lists)) for shot in (1, 5)}


def evaluate(model, dataset, batch_size: int, **kwargs) -> tuple[dict, list[torch.Tensor]]:
    """Metrics and the logits of every batch."""
    logits: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda m, i, out: logits.append(out["logits"].clone()))
    try:
        loader = build_eval_loader(dataset, batch_size=batch_size, num_workers=0)
        metrics = run_evaluation(model, loader, class_ids=CLASSES, device="cpu", progress=False,
                                 **kwargs)
    finally:
        hook.remove()
    return metrics, logits


def assert_identical(got: tuple[dict, list], want: tuple[dict, list]) -> None:
    assert got[0] == want[0]
    assert len(got[1]) == len(want[1])
    for a, b in zip(got[1], want[1]):
        assert torch.equal(a, b)


def image_uses(dataset) -> list[str]:
    """Every image name of every episode, with repeats."""
    names = []
    for i in range(len(dataset)):
        item = dataset[i]
        names += [item["query_id"], *item["support_ids"]]
    return names


@pytest.mark.parametrize("shot", [1, 5])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_cold_and_warm_passes_equal_no_reuse(model, datasets, shot, batch_size) -> None:
    dataset = datasets[shot]
    off = evaluate(model, dataset, batch_size)
    cache, memos = FeatureCache(size_gb=1), [PassMemo(size_gb=1), PassMemo(size_gb=1)]
    cold = evaluate(model, dataset, batch_size, feature_cache=cache, memo=memos[0])
    after_cold = cache.stats()
    warm = evaluate(model, dataset, batch_size, feature_cache=cache, memo=memos[1])
    assert off[0]["num_episodes"] == EPISODES
    assert_identical(cold, off)
    assert_identical(warm, off)
    uses = image_uses(dataset)
    distinct = len(set(uses))
    assert distinct < len(uses)  # episodes share images
    # two encoders (SAM 2, DINOv2): each distinct image encoded once by each, then reused
    assert after_cold["misses"] == 2 * distinct and after_cold["hits"] == 2 * (len(uses) - distinct)
    assert cache.stats()["misses"] == 2 * distinct
    assert cache.stats()["hits"] - after_cold["hits"] == 2 * len(uses)
    for memo in memos:  # a new memo per pass: the same supports are recomputed each time
        assert memo.stats()["misses"] == memos[0].stats()["misses"] > 0
        assert memo.stats()["hits"] + memo.stats()["misses"] == EPISODES * shot
    if shot == 5:
        assert memos[0].stats()["hits"] > 0


def test_a_tiny_budget_evicts_and_changes_nothing(model, datasets) -> None:
    dataset = datasets[5]
    off = evaluate(model, dataset, 4)
    sam2_bytes = sum(t.numel() * t.element_size() for t in model.encode_images(
        "sam2", dataset[0]["query_img"][None]).values())
    cache = FeatureCache(size_gb=3 * sam2_bytes / GB)  # about three images' SAM 2 maps
    memo = PassMemo(size_gb=2 * 40_000 / GB)  # about two support memories
    cached = [evaluate(model, dataset, 4, feature_cache=cache, memo=memo) for _ in range(2)]
    assert cache.stats()["evictions"] > 0 and memo.stats()["evictions"] > 0
    assert cache.stats()["bytes"] <= cache.stats()["budget_bytes"]
    assert memo.stats()["bytes"] <= memo.stats()["budget_bytes"]
    for result in cached:
        assert_identical(result, off)


def test_changed_weights_are_encoded_again(model, datasets) -> None:
    dataset = datasets[1]
    cache = FeatureCache(size_gb=1)
    evaluate(model, dataset, 4, feature_cache=cache)
    before = dict(model.frozen_encoders())
    conv_s0 = model.sam2.sam_mask_decoder.conv_s0.weight
    saved = conv_s0.detach().clone()
    try:
        with torch.no_grad():
            conv_s0.mul_(1.5)  # applied in the backbone step: SAM 2 features change
        after = model.frozen_encoders()
        assert after["sam2"] != before["sam2"] and after["dinov2"] == before["dinov2"]
        stats = cache.stats()
        changed = evaluate(model, dataset, 4, feature_cache=cache)
        assert cache.stats()["misses"] - stats["misses"] == len(set(image_uses(dataset)))
        assert_identical(changed, evaluate(model, dataset, 4))
    finally:
        with torch.no_grad():
            conv_s0.copy_(saved)
    assert model.frozen_encoders() == before
    with torch.no_grad():
        model.prior.dino.blocks[0].mlp.fc1.bias[0] += 1
    try:
        assert model.frozen_encoders()["dinov2"] != before["dinov2"]
    finally:
        with torch.no_grad():
            model.prior.dino.blocks[0].mlp.fc1.bias[0] -= 1


def test_key_follows_dtype_size_and_file(model, datasets, tmp_path) -> None:
    dataset = datasets[1]
    cache = FeatureCache(size_gb=1)
    evaluate(model, dataset, 4, feature_cache=cache)
    stats = cache.stats()
    bf16 = evaluate(model, dataset, 4, feature_cache=cache, amp_dtype=torch.bfloat16)
    # nothing computed in float32 is served under bf16: every image is encoded again
    assert cache.stats()["misses"] - stats["misses"] == 2 * len(set(image_uses(dataset)))
    assert_identical(bf16, evaluate(model, dataset, 4, amp_dtype=torch.bfloat16))
    cache.begin_pass(model, torch.device("cpu"), None)
    assert cache.key("sam2", "a", (3, 128, 128)) != cache.key("sam2", "a", (3, 64, 64))
    assert cache.key("sam2", "a", (3, 128, 128)) != cache.key("dinov2", "a", (3, 128, 128))
    with pytest.raises(KeyError, match="hmnet"):
        cache.key("hmnet", "a", (3, 128, 128))
    small = build_dataset(dataset="pascal", root=str(dataset.records[0].image).split("VOC2012")[0],
                          fold=0, shot=1, mode="val", image_size=64, num_episodes=2, seed=321,
                          cache_dir=str(tmp_path))
    assert small[0]["query_id"] != dataset[0]["query_id"]
    image = tmp_path / "x.jpg"
    image.write_bytes(b"1")
    name = image_identity(str(image), "resize128")
    os.utime(image, ns=(0, 10**9))
    assert image_identity(str(image), "resize128") != name != image_identity(str(image), "resize64")


def test_an_image_twice_in_a_batch_is_encoded_once(model, datasets, monkeypatch) -> None:
    from fssam.engine.feature_cache import BatchFeatures
    calls: list[int] = []
    original = type(model).encode_images

    def spy(self, name, images):
        calls.append(images.shape[0])
        return original(self, name, images)
    monkeypatch.setattr(type(model), "encode_images", spy)
    images = torch.rand(3, 3, SIZE, SIZE) * 255
    images[2] = images[0]
    for cache in (FeatureCache(size_gb=1), FeatureCache(size_gb=0)):
        cache.begin_pass(model, torch.device("cpu"), None)
        calls.clear()
        got = BatchFeatures(model, images, ["a", "b", "a"], cache).get("sam2")
        assert calls == [1, 1]
        for key, value in model.encode_images("sam2", images[2:]).items():
            assert torch.equal(got[key][2:], value)
    calls.clear()
    BatchFeatures(model, images, [None, None, None], cache).get("dinov2")
    assert calls == [1, 1, 1]  # unnamed images are never reused
    batch = next(iter(build_eval_loader(datasets[5], batch_size=2, num_workers=0)))
    ids = episode_image_ids(batch)
    assert ids[:2] == batch["query_id"] and ids[2:7] == batch["support_ids"][0]
