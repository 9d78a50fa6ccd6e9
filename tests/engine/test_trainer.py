"""Training on CPU with the micro SAM 2 and the synthetic dataset: schedule, resumable
sampling, exact mid-epoch resume, non-finite loss, early stopping, run records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fssam.data.protocol import episode_sequence
from fssam.tools.toy import make_toy_pascal
from fssam.engine import validation as validation_module
from fssam.engine import training
from fssam.engine.checkpoint import load_checkpoint
from fssam.engine.config import compose_config
from fssam.contract import poly_factor
from fssam.engine.schedule import epoch_validation_points, validation_points
from fssam.engine.train_data import ResumableSampler
from fssam.engine.trainer import NonFiniteLossError, Trainer
from fssam.models.fssam import FSSAM

from .conftest import records

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "tests" / "fixtures" / "parity"
RUN = "toy/FSSAM_tiny_dino/split0/1shot/micro"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    make_toy_pascal(root, num_images=80, size=(128, 160), workers=1)
    return root


@pytest.fixture(scope="module")
def script():
    return training


def config(toy_root: Path, exp_dir: Path, *overrides: str):
    """Micro SAM 2 (fixture weights), tiny DINOv2, 64 px, 8 episodes per step."""
    base = ["debug=cpu", f"dataset.root={toy_root}", f"dataset.cache_dir={exp_dir.parent / 'lists'}",
            f"exp_dir={exp_dir}", f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
            f"sam2.checkpoint={PARITY / 'micro_weights.pt'}", "sam2.image_size=64",
            "trainer.batch_size=8", "trainer.epochs=2", "trainer.val_per_epoch=2",
            "trainer.val_episodes=2", "trainer.num_threads=1", "trainer.progress=false",
            "trainer.val_mid_epoch_delay=0"]
    return compose_config("train", base + list(overrides))


def test_poly_schedule():
    factor = poly_factor(0.9)
    lrs = [1e-3 * factor(i, 10) for i in range(10)]
    assert lrs[0] == 1e-3 and lrs[5] == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    assert factor(10, 10) == 0.0


def test_validation_points():
    assert validation_points(10, 1) == {10}
    assert validation_points(10, 2) == {5, 10}
    assert validation_points(1, 2) == {1}
    assert validation_points(7, 3) == {2, 5, 7}


def test_epoch_validation_points_start_late_and_split_from_the_set_epoch():
    points = [epoch_validation_points(10, e, per_epoch=2, start_epoch=1, mid_epoch_from=3)
              for e in range(5)]
    assert points == [set(), {10}, {10}, {5, 10}, {5, 10}]
    assert epoch_validation_points(10, 4, per_epoch=0) == set()


def test_mid_epoch_delay_moves_only_the_points_inside_the_epoch():
    # HMNet's release: after the step of 0-based batch round(n / 2), i.e. round(n / 2) + 1 steps
    for n in (526, 1370, 7):
        assert epoch_validation_points(n, 0, per_epoch=2, mid_epoch_delay=1) == {
            round(n / 2) + 1, n}
    assert epoch_validation_points(4, 0, per_epoch=4, mid_epoch_delay=1) == {2, 3, 4}
    assert epoch_validation_points(10, 0, per_epoch=1, mid_epoch_delay=3) == {10}


def test_resumable_sampler_continues_the_epoch_order():
    dataset = list(range(11))
    shards = [ResumableSampler(torch.utils.data.DistributedSampler(dataset, num_replicas=2, rank=r,
                                                                   seed=5)) for r in (0, 1)]
    for sampler in shards:
        sampler.set_epoch(3)
    full = [list(s) for s in shards]
    assert sorted(full[0] + full[1]) == sorted(dataset + [full[0][0]])  # padded to 12
    shards[0].set_epoch(3, start=4)
    assert list(shards[0]) == full[0][4:] and len(shards[0]) == len(full[0]) - 4
    shards[0].set_epoch(4)
    assert list(shards[0]) != full[0]
    with pytest.raises(ValueError, match="start 7"):
        shards[0].set_epoch(4, start=7)


def test_run_records_and_checkpoints(toy_root, tmp_path, script):
    cfg = config(toy_root, tmp_path / "exp", "trainer.max_iterations=2", "trainer.val_per_epoch=4",
                 "trainer.val_episodes=4", f"trainer.val_prior_cache={tmp_path / 'priors'}")
    summary = script.train(cfg)
    run_dir = tmp_path / "exp" / RUN
    assert summary == {"iteration": 2, "best_miou": pytest.approx(summary["best_miou"]),
                       "stopped": "reached max_iterations"}
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "git.txt", "env.txt", "train.log", "metrics.jsonl", "tb", "last.pt",
            "best.pt"} <= names
    assert "commit:" in (run_dir / "git.txt").read_text()
    assert "torch:" in (run_dir / "env.txt").read_text()
    assert f"root: {toy_root}" in (run_dir / "config.yaml").read_text()
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tb").iterdir())
    assert [r["iteration"] for r in records(run_dir, "train")] == [1, 2]
    val = records(run_dir, "val")
    assert [r["iteration"] for r in val] == [1, 2]  # 4 iterations per epoch, 4 validations
    last = load_checkpoint(run_dir / "last.pt")
    assert last["iteration"] == 2 and last["iterations_per_epoch"] == 4 and len(last["rng"]) == 1
    assert last["config"]["trainer"]["batch_size"] == 8
    assert last["best_miou"] == max(r["miou"] for r in val)
    best = load_checkpoint(run_dir / "best.pt")
    assert best["iteration"] == max(val, key=lambda r: r["miou"])["iteration"]
    assert set(last["model"]) == set(best["model"]) and last["optimizers"]["adamw"]["state"]
    assert len(list((tmp_path / "priors").glob("*/*.pt"))) == 4  # one file per episode


def test_interrupted_run_resumes_to_identical_weights(toy_root, tmp_path, script, monkeypatch):
    # 4 iterations per epoch, validation after 2 and 4; interrupted after 3, resumed to 6.
    common = ["trainer.max_iterations=6", "trainer.log_every=2"]  # a loss window spans the cut
    script.train(config(toy_root, tmp_path / "a", *common))

    original = Trainer.train_step

    def interrupt_after_3(self, batch):
        if self.state.iteration == 3:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupt_after_3)
    with pytest.raises(KeyboardInterrupt):
        script.train(config(toy_root, tmp_path / "b", *common, "trainer.save_every=3"))
    monkeypatch.undo()
    run_a, run_b = tmp_path / "a" / RUN, tmp_path / "b" / RUN
    assert load_checkpoint(run_b / "last.pt")["iteration"] == 3
    script.train(config(toy_root, tmp_path / "b", *common, "trainer.save_every=3"))

    a, b = load_checkpoint(run_a / "last.pt"), load_checkpoint(run_b / "last.pt")
    assert a["iteration"] == b["iteration"] == 6 and a["epoch"] == b["epoch"] == 1
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for index, state in a["optimizers"]["adamw"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizers"]["adamw"]["state"][index][name]), (index, name)
    assert a["best_miou"] == b["best_miou"]
    assert records(run_a, "train") == records(run_b, "train")
    assert records(run_a, "val") == records(run_b, "val")


def test_resume_refuses_a_different_epoch_length(toy_root, tmp_path, script):
    script.train(config(toy_root, tmp_path / "exp", "trainer.max_iterations=1",
                        "trainer.val_per_epoch=0"))
    with pytest.raises(ValueError, match="4 iterations per epoch, this run 8"):
        script.train(config(toy_root, tmp_path / "exp", "trainer.batch_size=4",
                            "trainer.max_iterations=2", "trainer.val_per_epoch=0"))


def test_non_finite_loss_stops_with_the_iteration(toy_root, tmp_path, script, monkeypatch):
    calls, real_loss = [], FSSAM.loss

    def nan_on_second(self, out, batch):
        calls.append(1)
        losses = real_loss(self, out, batch)
        return {"loss": losses["loss"] * float("nan") if len(calls) == 2 else losses["loss"]}

    monkeypatch.setattr(FSSAM, "loss", nan_on_second)
    cfg = config(toy_root, tmp_path / "exp", "trainer.max_iterations=4", "trainer.save_every=1",
                 "trainer.val_per_epoch=0")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at iteration 2 \(epoch 0\)"):
        script.train(cfg)
    last = load_checkpoint(tmp_path / "exp" / RUN / "last.pt")
    assert last["iteration"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_early_stopping(toy_root, tmp_path, script, monkeypatch):
    scores = iter([10.0, 20.0, 15.0, 15.0, 30.0])

    def scripted(*args, **kwargs):
        return {"miou": next(scores), "fbiou": 50.0, "class_iou": {}}

    monkeypatch.setattr(validation_module, "run_evaluation", scripted)
    cfg = config(toy_root, tmp_path / "exp", "trainer.epochs=5", "trainer.max_iterations=null",
                 "trainer.early_stop_patience=1")
    summary = script.train(cfg)
    # validations at epochs 0.5, 1.0 (best), 1.5, 2.0: one epoch without improvement.
    assert summary == {"iteration": 8, "best_miou": 20.0, "stopped": "stopped early"}
    run_dir = tmp_path / "exp" / RUN
    assert load_checkpoint(run_dir / "best.pt")["iteration"] == 4
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 8
    # Started again, the run stays stopped.
    assert script.train(cfg) == summary
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 8


@pytest.mark.parametrize("protocol", ["release", "seeds"])
def test_validation_scores_the_configured_protocol(toy_root, tmp_path, script, monkeypatch,
                                                   protocol):
    seen = []

    def spy(model, loader, **kwargs):
        seen.append(loader.dataset)
        return {"miou": 1.0, "fbiou": 1.0, "class_iou": {}}

    monkeypatch.setattr(validation_module, "run_evaluation", spy)
    script.train(config(toy_root, tmp_path / "exp", "trainer.max_iterations=1",
                        "trainer.val_per_epoch=4", "trainer.val_episodes=12",
                        f"trainer.val_protocol={protocol}"))
    dataset = seen[0]
    expected = episode_sequence(protocol, dataset.records, shot=1, num_episodes=12, seed=321,
                                workers=32)  # the release's test episodes: seed 321, 32 workers
    assert dataset.protocol == protocol and dataset.episodes == expected


def test_early_stopping_waits_for_the_epoch_end(toy_root, tmp_path, script, monkeypatch):
    # The releases check patience between epochs: a best found at mid-epoch still lets the
    # following epochs run whole.
    scores = iter([10.0, 5.0, 20.0, 15.0, 15.0, 15.0, 30.0])

    def scripted(*args, **kwargs):
        return {"miou": next(scores), "fbiou": 50.0, "class_iou": {}}

    monkeypatch.setattr(validation_module, "run_evaluation", scripted)
    cfg = config(toy_root, tmp_path / "exp", "trainer.epochs=5", "trainer.max_iterations=null",
                 "trainer.early_stop_patience=1", "trainer.val_mid_epoch_delay=1")
    summary = script.train(cfg)
    # 4 iterations per epoch, validations after 3 and 4 steps of each epoch: the best (20) at
    # iteration 7, mid-epoch 1; epoch 2 runs whole (11, 12) and the run stops at its end,
    # where stopping 1.0 epoch after the best would have stopped at iteration 11.
    assert summary == {"iteration": 12, "best_miou": 20.0, "stopped": "stopped early"}
    assert load_checkpoint(tmp_path / "exp" / RUN / "best.pt")["iteration"] == 7


@pytest.mark.parametrize("delay, expected", [(0, [8, 12, 14, 16]), (1, [8, 12, 15, 16])])
def test_validation_starts_late_and_splits_epochs_only_from_the_set_epoch(
        toy_root, tmp_path, script, monkeypatch, delay, expected):
    calls = []

    def scripted(*args, **kwargs):
        calls.append(1)
        return {"miou": float(len(calls)), "fbiou": 50.0, "class_iou": {}}

    monkeypatch.setattr(validation_module, "run_evaluation", scripted)
    cfg = config(toy_root, tmp_path / "exp", "trainer.epochs=4", "trainer.max_iterations=null",
                 "trainer.val_start_epoch=1", "trainer.val_mid_epoch_from=3",
                 f"trainer.val_mid_epoch_delay={delay}")
    script.train(cfg)
    # 4 iterations per epoch: epochs 1 and 2 at their end only, epoch 3 twice (mid-epoch after
    # 2 + delay steps); none in 0.
    assert [r["iteration"] for r in records(tmp_path / "exp" / RUN, "val")] == expected


def test_validation_reuses_encoders_but_not_memories_across_a_step(toy_root, tmp_path, script,
                                                                    monkeypatch):
    passes: list[dict] = []
    computed: list[int] = []
    run = validation_module.run_evaluation
    encode_supports = FSSAM._encode_supports

    def spy_supports(self, feats, masks):
        computed.append(masks.shape[0])
        return encode_supports(self, feats, masks)

    def spy_run(model, loader, **kwargs):
        cache, memo = kwargs["feature_cache"], kwargs["memo"]
        before, computed[:] = cache.stats(), []
        result = run(model, loader, **kwargs)
        weights = {k: v.clone() for k, v in model.trainable_state_dict().items()}
        passes.append({"memo": memo, "supports": sum(computed), "weights": weights,
                       "misses": cache.stats()["misses"] - before["misses"]})
        return result
    monkeypatch.setattr(FSSAM, "_encode_supports", spy_supports)
    monkeypatch.setattr(validation_module, "run_evaluation", spy_run)
    # 4 iterations per epoch and 4 validations: one after each of the 2 steps
    script.train(config(toy_root, tmp_path / "exp", "trainer.max_iterations=2",
                        "trainer.val_per_epoch=4", "trainer.val_episodes=4"))
    first, second = passes
    assert any(not torch.equal(first["weights"][k], second["weights"][k]) for k in first["weights"])
    assert first["memo"] is not second["memo"]
    assert second["supports"] == first["supports"] == first["memo"].stats()["misses"] > 0
    assert first["misses"] > 0 and second["misses"] == 0  # frozen encoders: all reused
