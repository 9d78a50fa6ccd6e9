"""HMNet's two training stages through the shared trainer (CPU, tiny models, synthetic data):
the base learner's run records and checkpoint (which HMNet loads), exact resume of both
stages, and 2-process (gloo) runs whose ranks end with the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from fssam.data.folds import base_classes
from fssam.tools.toy import make_toy_pascal
from fssam.engine.checkpoint import load_checkpoint
from fssam.engine import training
from fssam.engine.config import compose_config
from fssam.engine.trainer import Trainer
from fssam.models.hmnet import build_model
from fssam.models.hmnet.model import TINY_SIZES
from fssam.engine.config import model_kwargs
from fssam.utils.dist import DistInfo
from fssam.utils.seed import seed_everything

from . import two_stage_worker as stages
from .conftest import launch, records

WORKER = Path(__file__).with_name("two_stage_worker.py")
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy")
    make_toy_pascal(root, num_images=80, size=(128, 160), workers=1)
    return root, tmp_path_factory.mktemp("lists")


@pytest.fixture(scope="module")
def script():
    return training


def base_cfg(toy, exp_dir: Path, *extra: str):
    return compose_config("train", stages.base_overrides(*toy, exp_dir, *extra))


def test_base_stage_validates_by_base_class_miou_and_hmnet_loads_its_best(toy, tmp_path, script):
    summary = script.train(base_cfg(toy, tmp_path))
    run_dir = tmp_path / stages.BASE_RUN
    val = records(run_dir, "val")
    assert [r["epoch"] for r in val] == [1.0, 2.0] and summary["stopped"] == "finished"
    assert set(val[0]) == {"type", "iteration", "epoch", "miou", "class_iou", "best_miou"}
    assert [int(c) for c in val[0]["class_iou"]] == base_classes("pascal", 0)
    assert summary["best_miou"] == max(r["miou"] for r in val)
    groups = load_checkpoint(run_dir / "last.pt")["optimizers"]["sgd"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [2.5e-4, 2.5e-3, 2.5e-3]
    assert [g["lr"] for g in groups] == [0.0] * 3  # 1-based poly: 0 at the last iteration
    best = load_checkpoint(run_dir / "best.pt")
    assert best["best_miou"] == summary["best_miou"]
    model = build_model(backbone=stages.BACKBONE, base_learner_checkpoint=run_dir / "best.pt",
                        **TINY_SIZES)
    assert torch.equal(model.state_dict()["base_learner.2.weight"], best["model"]["cls.4.weight"])
    assert torch.equal(model.state_dict()["layer3.1.running_var"],
                       best["model"]["layer3.1.running_var"])


def same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def same_optimizers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        for index, state in a[name]["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(value),
                                   torch.as_tensor(b[name]["state"][index][key])), (name, key)


def interrupt_after(monkeypatch, iterations: int) -> None:
    original = Trainer.train_step

    def step(self, batch):
        if self.state.iteration == iterations:
            raise KeyboardInterrupt
        return original(self, batch)
    monkeypatch.setattr(Trainer, "train_step", step)


def test_base_stage_resumes_to_the_weights_of_an_uninterrupted_run(toy, tmp_path, script,
                                                                   monkeypatch):
    # 13 iterations per epoch; interrupted mid-epoch after 5, resumed to 7 (BN and dropout
    # in training mode: the random streams and batch statistics must continue exactly)
    common = ("trainer.max_iterations=7", "trainer.val_per_epoch=0")
    script.train(base_cfg(toy, tmp_path / "a", *common))
    interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        script.train(base_cfg(toy, tmp_path / "b", *common, "trainer.save_every=5"))
    monkeypatch.undo()
    script.train(base_cfg(toy, tmp_path / "b", *common, "trainer.save_every=5"))
    a, b = (load_checkpoint(tmp_path / r / stages.BASE_RUN / "last.pt") for r in "ab")
    assert a["iteration"] == b["iteration"] == 7 and a["iterations_per_epoch"] == 13
    same_state(a["model"], b["model"])
    same_optimizers(a["optimizers"], b["optimizers"])


def test_hmnet_resumes_to_the_weights_of_an_uninterrupted_run(toy, tmp_path, monkeypatch):
    stages.hmnet_trainer(*toy, tmp_path / "a", CPU, max_iterations=4, validate=False).fit()
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        stages.hmnet_trainer(*toy, tmp_path / "b", CPU, max_iterations=4, validate=False,
                             save_every=3).fit()
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 3
    stages.hmnet_trainer(*toy, tmp_path / "b", CPU, max_iterations=4, validate=False).fit()
    a, b = (load_checkpoint(tmp_path / r / "last.pt") for r in "ab")
    assert a["iteration"] == b["iteration"] == 4
    assert set(a["optimizers"]) == {"sgd", "adamw"}
    same_state(a["model"], b["model"])
    same_optimizers(a["optimizers"], b["optimizers"])


def test_hmnet_trains_on_a_base_learner_and_validates(toy, tmp_path, script):
    script.train(base_cfg(toy, tmp_path, "trainer.max_iterations=2", "trainer.val_per_epoch=0"))
    base = tmp_path / stages.BASE_RUN / "last.pt"
    trainer = stages.hmnet_trainer(*toy, tmp_path / "hmnet", CPU, base_learner=base)
    frozen = {k: v.clone() for k, v in trainer.model.state_dict().items()
              if k.startswith(("layer", "ppm.", "cls.", "base_learner."))}
    summary = trainer.fit()
    assert summary["stopped"] == "finished" and summary["best_miou"] is not None
    val = records(tmp_path / "hmnet", "val")
    assert len(val) == 2 and {"miou", "fbiou", "class_iou"} <= set(val[0])
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # base learner untouched
    assert torch.equal(state["base_learner.2.weight"],
                       load_checkpoint(base)["model"]["cls.4.weight"])


def test_train_py_meta_trains_hmnet_from_its_config(toy, tmp_path, script):
    script.train(base_cfg(toy, tmp_path, "trainer.max_iterations=1", "trainer.val_per_epoch=0"))
    base = tmp_path / stages.BASE_RUN / "last.pt"
    cfg = compose_config("train", [
        "dataset=toy", f"dataset.root={toy[0]}", f"dataset.cache_dir={toy[1]}",
        f"exp_dir={tmp_path}", "model=hmnet_tiny", f"model.backbone={stages.BACKBONE}",
        f"model.base_learner_checkpoint={base}", f"model.image_size={stages.SIZE}",
        "trainer.device=cpu", "trainer.amp=none", "trainer.batch_size=2",
        "trainer.max_iterations=2", "trainer.val_per_epoch=1", "trainer.val_episodes=2",
        "trainer.num_workers=0", "trainer.num_threads=1", "trainer.progress=false"])
    summary = script.train(cfg)
    assert summary["iteration"] == 2 and summary["best_miou"] is not None
    last = load_checkpoint(tmp_path / "toy" / "HMNet_tiny" / "split0" / "1shot" / "vgg" /
                           "last.pt")
    assert set(last["optimizers"]) == {"sgd", "adamw"}
    assert last["optimizers"]["sgd"]["param_groups"][0]["initial_lr"] == pytest.approx(0.05)
    assert not any(k.startswith(("layer", "ppm.", "cls.", "base_learner.")) for k in last["model"])


def run_ranks(toy, tmp_path: Path, stage: str, iterations: int) -> list[dict]:
    root, lists = toy
    out = tmp_path / f"{stage}_ranks"
    launch(WORKER, ["--stage", stage, "--root", str(root), "--lists", str(lists),
                    "--exp", str(tmp_path / stage), "--out", str(out),
                    "--iterations", str(iterations)],
           nproc=2, cwd=tmp_path, env={"PYTHONPATH": str(stages.ROOT)})
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["base", "hmnet"])
def test_two_process_gloo_runs_end_with_the_same_weights_on_both_ranks(toy, tmp_path, stage):
    ranks = run_ranks(toy, tmp_path, stage, iterations=3)
    assert [r["iteration"] for r in ranks] == [3, 3]
    first, second = (r["state"] for r in ranks)
    if stage == "hmnet":
        init = stages.hmnet_trainer(*toy, tmp_path / "init", CPU, validate=False).model
    else:
        cfg = base_cfg(toy, tmp_path / "init")
        seed_everything(cfg.seed)  # as train.py builds the model
        init = instantiate(model_kwargs(cfg.model))
    init = init.state_dict()
    moved = 0
    for key, value in first.items():
        if "running_" in key or "num_batches" in key:
            assert stage == "base" or torch.equal(value, init[key]), key  # HMNet: frozen BN
            continue  # base: gloo has no SyncBatchNorm, each rank's statistics are its own
        assert torch.equal(value, second[key]), key
        moved += int(not torch.equal(value, init[key]))
    assert moved > 0
