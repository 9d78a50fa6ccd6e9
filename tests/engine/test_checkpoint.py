"""Checkpoints: round trip, weights_only loads, strict weights, crash-safe writes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fssam.engine import checkpoint as ckpt
from fssam.models.fssam import build_model
from fssam.utils.seed import get_rng_state, seed_everything, set_rng_state

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


@pytest.fixture(scope="module")
def model():
    return build_model(sam2_config=str(PARITY / "sam2_micro_v1.yaml"),
                       sam2_checkpoint=str(PARITY / "micro_weights.pt"), image_size=64,
                       dino_checkpoint=None, dino_input_size=28,
                       dino_kwargs=dict(embed_dim=16, depth=1, num_heads=1))


def full_state(model, iteration: int) -> dict:
    return {"model": model.trainable_state_dict(), "optimizers": {"adamw": {"state": {}, "param_groups": []}},
            "epoch": 1, "iteration": iteration, "best_miou": 12.5, "config": {"shot": 1},
            "rng": [get_rng_state()]}


def test_round_trip_restores_weights_and_rng(model, tmp_path):
    seed_everything(3)
    path = ckpt.save_checkpoint(full_state(model, 7), tmp_path / "last.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    state = ckpt.load_checkpoint(path)
    assert state["iteration"] == 7 and state["config"] == {"shot": 1}
    for key, value in model.trainable_state_dict().items():
        assert torch.equal(state["model"][key], value), key
    set_rng_state(state["rng"][0])
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Path("x")}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        ckpt.load_checkpoint(path, full=False)


def test_load_names_missing_keys(model, tmp_path):
    path = ckpt.save_checkpoint({"model": model.trainable_state_dict()}, tmp_path / "w.pt")
    with pytest.raises(KeyError, match="'epoch', 'iteration'"):
        ckpt.load_checkpoint(path)
    assert ckpt.load_checkpoint(path, full=False)["model"]


def test_trained_weights_load_strictly(model, tmp_path):
    weights = {k: v + 1 for k, v in model.trainable_state_dict().items()}
    extra = dict(weights, **{"sam2.unknown.weight": torch.zeros(1)})
    path = ckpt.save_checkpoint({"model": extra}, tmp_path / "bad.pt")
    with pytest.raises(KeyError, match="sam2.unknown.weight"):
        ckpt.load_trained_weights(model, path)
    dropped = sorted(weights)[0]
    path = ckpt.save_checkpoint({"model": {k: v for k, v in weights.items() if k != dropped}},
                                tmp_path / "short.pt")
    with pytest.raises(KeyError, match=dropped.replace(".", r"\.")):
        ckpt.load_trained_weights(model, path)
    path = ckpt.save_checkpoint({"model": weights}, tmp_path / "good.pt")
    ckpt.load_trained_weights(model, path)
    assert torch.equal(model.trainable_state_dict()[dropped], weights[dropped])


def _partial_save(obj, handle, *args, **kwargs):
    handle.write(b"PK\x03\x04 half a checkpoint")
    raise OSError("disk full")


def _failing_replace(src, dst):
    raise OSError("power cut")


@pytest.mark.parametrize("target, fake", [("torch.save", _partial_save),
                                          ("os.replace", _failing_replace)])
def test_crash_while_saving_keeps_previous_checkpoint(model, tmp_path, monkeypatch, target, fake):
    path = ckpt.save_checkpoint(full_state(model, 1), tmp_path / "last.pt")
    before = path.read_bytes()
    monkeypatch.setattr(target, fake)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(full_state(model, 2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ckpt.load_checkpoint(path)["iteration"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_find_resume_checkpoint(tmp_path):
    assert ckpt.find_resume_checkpoint(tmp_path) is None
    (tmp_path / "last.pt").write_bytes(b"")
    assert ckpt.find_resume_checkpoint(tmp_path) == tmp_path / "last.pt"
