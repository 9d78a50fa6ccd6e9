"""Prior cache: the key covers every setting, files round-trip exactly and atomically."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from fssam.engine.prior_cache import (KEY_FIELDS, PriorCache, model_prior_settings,
                                     prior_cache_key)
from fssam.engine.config import ConfigError
from fssam.utils.fingerprint import weights_fingerprint

SETTINGS = {
    "dataset": "pascal",
    "fold": 0,
    "shot": 1,
    "episodes": "release:321:0123456789abcdef",
    "image_size": 16,
    "support_annotation": "mask",
    "coco_folds": None,
    "dino_variant": "vitb14",
    "dino_input_size": 560,
    "dino_weights": "0123456789abcdef",
    "fp32_priors": False,
    "amp": "none",
}
CHANGED = {
    "dataset": "coco",
    "fold": 1,
    "shot": 5,
    "episodes": "seeds:321:0123456789abcdef",
    "image_size": 32,
    "support_annotation": "bbox",
    "coco_folds": "contiguous",
    "dino_variant": "vitl14",
    "dino_input_size": 518,
    "dino_weights": "fedcba9876543210",
    "fp32_priors": True,
    "amp": "bfloat16",
}


def test_key_changes_with_every_setting() -> None:
    assert set(CHANGED) == set(KEY_FIELDS)
    base = prior_cache_key(SETTINGS)
    keys = {base}
    for field, value in CHANGED.items():
        key = prior_cache_key({**SETTINGS, field: value})
        assert key != base, field
        keys.add(key)
    assert len(keys) == len(KEY_FIELDS) + 1
    assert prior_cache_key(dict(reversed(list(SETTINGS.items())))) == base


def test_key_rejects_missing_and_unknown_settings() -> None:
    with pytest.raises(ValueError, match="missing.*'episodes'"):
        prior_cache_key({k: v for k, v in SETTINGS.items() if k != "episodes"})
    with pytest.raises(ValueError, match="unexpected.*'sed'"):
        prior_cache_key({**SETTINGS, "sed": 1})
    without_amp = {k: v for k, v in SETTINGS.items() if k != "amp"}
    assert prior_cache_key(without_amp) == prior_cache_key(SETTINGS)


def test_directory_is_named_by_the_key(tmp_path) -> None:
    a = PriorCache(tmp_path, SETTINGS)
    b = PriorCache(tmp_path, {**SETTINGS, "shot": 5})
    assert a.dir == tmp_path / prior_cache_key(SETTINGS)
    assert a.dir != b.dir
    assert (a.dir / "settings.json").is_file()


def test_put_get_round_trip_is_exact(tmp_path) -> None:
    cache = PriorCache(tmp_path, SETTINGS)
    priors = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
    assert cache.get(7) is None
    cache.put(7, priors)
    assert torch.equal(cache.get(7), priors)
    assert torch.equal(PriorCache(tmp_path, SETTINGS).get(7), priors)
    assert cache.get(8) is None
    assert not [p for p in cache.dir.iterdir() if p.name.endswith(".tmp")]


def test_bad_shape_and_unreadable_files(tmp_path) -> None:
    cache = PriorCache(tmp_path, SETTINGS)
    with pytest.raises(ValueError, match=r"\[2, 16, 16\]"):
        cache.put(0, torch.zeros(2, 8, 8))
    cache.path(1).write_bytes(b"not a tensor file")
    assert cache.get(1) is None
    torch.save(torch.zeros(2, 8, 8), cache.path(2))
    assert cache.get(2) is None


def test_concurrent_writers_leave_complete_files(tmp_path) -> None:
    caches = [PriorCache(tmp_path, SETTINGS) for _ in range(4)]
    value = torch.rand(2, 16, 16)

    def fill(cache: PriorCache) -> None:
        for index in range(20):
            cache.put(index, value)

    threads = [threading.Thread(target=fill, args=(c,)) for c in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(20):
        assert torch.equal(caches[0].get(index), value)
    assert sorted(p.name for p in caches[0].dir.iterdir())[-1] == "settings.json"
    assert len(list(caches[0].dir.iterdir())) == 21


def test_weights_fingerprint_tracks_every_value() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    before = weights_fingerprint(net)
    assert weights_fingerprint(net) == before
    with torch.no_grad():
        net[1].bias[2] += 1e-6
    assert weights_fingerprint(net) != before


def test_model_prior_settings_asks_the_model_or_names_the_setting():
    class WithPriors(nn.Module):
        def prior_cache_settings(self):
            return {"dino_variant": "vitb14"}

    assert model_prior_settings(WithPriors(), setting="prior_cache=true",
                                model_name="A") == {"dino_variant": "vitb14"}
    with pytest.raises(ConfigError, match=r"^trainer.val_prior_cache=/p: model B has no priors"):
        model_prior_settings(nn.Linear(1, 1), setting="trainer.val_prior_cache=/p", model_name="B")
