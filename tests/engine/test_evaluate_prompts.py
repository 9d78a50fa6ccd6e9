"""Evaluation with prompted supports (support_annotation=points|scribble) on the micro
SAM 2 + tiny DINOv2: the model's own SAM 2 masks the supports on the features the episode
reuses; metrics are a pure function of (seed, episode), whatever the loader's workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fssam.data import build_dataset
from fssam.data.folds import novel_classes
from fssam.engine.config import compose_config
from fssam.engine.evaluate import PriorOnly, build_eval_loader, run_evaluation
from fssam.engine.feature_cache import FeatureCache
from fssam.engine.tester import validate_test_config
from fssam.models.fssam import build_model
from fssam.models.fssam import sam2_adapter as sam
from fssam.models.fssam.prompts import batch_prompt_masks
from fssam.utils.checks import ConfigError

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
SIZE = 128
EPISODES = 6
CLASSES = novel_classes("pascal", 0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(sam2_config=str(PARITY / "sam2_micro_v1.yaml"),
                       sam2_checkpoint=str(PARITY / "micro_weights.pt"), image_size=SIZE,
                       dino_checkpoint=None, dino_input_size=56,
                       dino_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2}).eval()


def dataset(root: Path, cache: Path, kind: str, seed: int = 321):
    return build_dataset(dataset="pascal", root=str(root), fold=0, shot=2, mode="val",
                         image_size=SIZE, num_episodes=EPISODES, seed=seed,
                         support_annotation=kind, cache_dir=str(cache))


def evaluate(model, data, workers: int = 0, **kwargs) -> dict:
    loader = build_eval_loader(data, batch_size=2, num_workers=workers)
    return run_evaluation(model, loader, class_ids=CLASSES, device="cpu", progress=False,
                          **kwargs)


class Recorder(torch.nn.Module):
    """The model, keeping the support masks each forward received."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.masks = model, []
        self.foreground = model.foreground

    def forward(self, batch, **reuse):
        self.masks.append(batch["support_masks"].clone())
        return self.model(batch, **reuse)

    def support_masks_from_prompts(self, batch, **reuse):
        return self.model.support_masks_from_prompts(batch, **reuse)

    def frozen_encoders(self):
        return self.model.frozen_encoders()

    def encode_images(self, name, images):
        return self.model.encode_images(name, images)


@pytest.mark.parametrize("kind", ["points", "scribble"])
def test_metrics_are_pure_in_seed_and_episode(model, reuse_root, tmp_path, kind):
    data = dataset(reuse_root, tmp_path, kind)
    first = evaluate(model, data)
    assert first["num_episodes"] == EPISODES and 0 < first["fbiou"] < 100
    assert evaluate(model, dataset(reuse_root, tmp_path / "again", kind), workers=2) == first
    masks = evaluate(model, dataset(reuse_root, tmp_path, "mask"))
    assert masks["fbiou"] != first["fbiou"]  # the prompts, not the ground truth, were used


def test_supports_are_masked_by_the_models_sam2_on_shared_features(model, reuse_root, tmp_path,
                                                                  monkeypatch):
    data = dataset(reuse_root, tmp_path, "points")
    recorder = Recorder(model).eval()  # evaluation leaves it as it found it
    calls = []
    encode = model.encode_images
    monkeypatch.setattr(model, "encode_images",
                        lambda name, images: calls.append(name) or encode(name, images))
    cache = FeatureCache(size_gb=1)
    evaluate(recorder, data, feature_cache=cache)
    # every image of the pass encoded once by SAM 2 (prompts and episodes share the cache)
    assert calls.count("sam2") == calls.count("dinov2") == cache.misses / 2 > 0
    batches = list(build_eval_loader(data, batch_size=2, num_workers=0))
    for batch, given in zip(batches, recorder.masks):
        feats = sam.ImageFeatures.cat([sam.image_features(model.sam2, image[None])
                                       for image in batch["support_imgs"].flatten(0, 1)])
        expected = batch_prompt_masks(model.sam2, feats, batch)
        torch.testing.assert_close(given, expected, rtol=0, atol=0)
        assert given.shape == (2, 2, SIZE, SIZE) and given.any()


def test_models_without_sam2_and_cached_priors_are_refused(model, reuse_root, tmp_path):
    class NoSAM2(torch.nn.Module):
        foreground = staticmethod(model.foreground)

        def forward(self, batch, **reuse):
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match="NoSAM2 cannot turn support prompts"):
        evaluate(NoSAM2(), dataset(reuse_root, tmp_path, "scribble"))
    baseline = evaluate(PriorOnly(model), dataset(reuse_root, tmp_path, "points"))
    assert baseline["num_episodes"] == EPISODES
    cfg = compose_config("test", ["dataset=toy", "dataset.support_annotation=points",
                                  "prior_cache=true"])
    with pytest.raises(ConfigError, match="prior_cache=true with dataset.support_annotation"):
        validate_test_config(cfg)
