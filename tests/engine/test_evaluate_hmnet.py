"""HMNet through the shared evaluation: test.py on the synthetic dataset with a tiny HMNet,
one and two processes, its own checkpoints, the authors' checkpoint format, the prior-only
baseline and the evaluation cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fssam.engine.config import compose_config
from fssam.engine.tester import build_test_model, evaluate_protocols
from fssam.engine.config import ConfigError
from fssam.utils.dist import DistInfo

from .conftest import launch

REPO = Path(__file__).resolve().parents[2]
SINGLE = DistInfo(0, 1, 0, torch.device("cpu"))
RUN = Path("toy") / "HMNet_tiny" / "split0" / "1shot" / "resnet50"

pytestmark = pytest.mark.usefixtures("one_thread")


def overrides(toy_root: Path, exp_dir: Path, *extra: str) -> list[str]:
    return ["debug=cpu", "model=hmnet_tiny", f"dataset.root={toy_root}",
            f"dataset.cache_dir={exp_dir / 'lists'}", f"exp_dir={exp_dir}", "episodes=8",
            "seeds=[321]", "trainer.progress=false", "trainer.num_threads=1", *extra]


@pytest.mark.slow
def test_test_py_gives_identical_metrics_with_one_and_two_processes(toy_root, tmp_path):
    results = []
    for nproc in (1, 2):
        exp = tmp_path / f"p{nproc}"
        launch(REPO / "test.py", overrides(toy_root, exp, "checkpoint_format=none", "batch_size=2"),
               nproc, cwd=REPO)
        results.append(json.loads((exp / RUN / "results.json").read_text()))
    one, two = results
    assert (one["model"], one["variant"], two["world_size"]) == ("HMNet_tiny", "resnet50", 2)
    assert one["per_seed"][0]["num_episodes"] == one["release"]["num_episodes"] == 8
    assert one["release"]["workers"] == 8  # HMNet's PASCAL config
    assert one["per_seed"] == two["per_seed"] and one["release"] == two["release"]


def test_own_checkpoints_load_strictly_and_change_predictions(toy_root, tmp_path):
    cfg = compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none"))
    untrained = build_test_model(cfg)
    before = evaluate_protocols(cfg, untrained, SINGLE)
    state = {k: v * 1.5 for k, v in untrained.trainable_state_dict().items()}
    state["cls_meta.3.bias"] = torch.tensor([8.0, -8.0])  # the meta learner says background
    torch.save({"model": state, "epoch": 3}, tmp_path / "best.pt")
    cfg = compose_config("test", overrides(toy_root, tmp_path, f"checkpoint={tmp_path / 'best.pt'}"))
    loaded = build_test_model(cfg)
    for key, value in loaded.trainable_state_dict().items():
        assert torch.equal(value, state[key]), key
    assert evaluate_protocols(cfg, loaded, SINGLE)["per_seed"] != before["per_seed"]
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith("cls_meta.")}},
               tmp_path / "short.pt")
    cfg = compose_config("test", overrides(toy_root, tmp_path, f"checkpoint={tmp_path / 'short.pt'}"))
    with pytest.raises(KeyError, match="cls_meta"):
        build_test_model(cfg)


def test_release_checkpoint_needs_no_base_learner_file(toy_root, tmp_path):
    cfg = compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none"))
    source = build_test_model(cfg)
    whole = {f"module.{k}": v + 0.25 if v.is_floating_point() else v
             for k, v in source.state_dict().items()}
    torch.save({"epoch": 50, "state_dict": whole, "optimizer": {}, "optimizer_swin": {}},
               tmp_path / "best_1shot.pth")
    cfg = compose_config("test", overrides(
        toy_root, tmp_path, "checkpoint_format=release", f"checkpoint={tmp_path / 'best_1shot.pth'}",
        f"model.base_learner_checkpoint={tmp_path / 'absent' / 'best.pth'}"))
    loaded = build_test_model(cfg)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, whole[f"module.{key}"]), key
    with pytest.raises(Exception, match="base learner .*absent.*best.pth not found"):
        build_test_model(compose_config("test", overrides(
            toy_root, tmp_path, "checkpoint_format=none",
            f"model.base_learner_checkpoint={tmp_path / 'absent' / 'best.pth'}")))


def test_prior_only_baseline_and_cache_reuse(toy_root, tmp_path):
    cfg = compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none"))
    model = build_test_model(cfg)
    no_cache = compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none",
                                                "trainer.eval_cache.enabled=false"))
    first, second = evaluate_protocols(cfg, model, SINGLE), evaluate_protocols(no_cache, model, SINGLE)
    assert first["per_seed"] == second["per_seed"] and first["release"] == second["release"]
    cfg.prior_only = True
    prior = evaluate_protocols(cfg, model, SINGLE)
    assert prior["prior_only"] and prior["per_seed"] != first["per_seed"]
    cfg.prior_only, cfg.prior_cache = False, True
    with pytest.raises(ConfigError, match="prior_cache=true: model HMNet_tiny has no priors"):
        evaluate_protocols(cfg, model, SINGLE)
