"""The resume rule: bookkeeping changes pass, run-altering changes need leave, another
run's checkpoint is refused; every refusal names the keys and both values."""

from __future__ import annotations

import copy

import pytest

from fssam.engine.resume_check import ResumeMismatchError, check_resume_config

SAVED = {"shot": 1, "split": 0, "seed": 321, "exp_dir": "exp", "run_dir": "exp/a",
         "dataset": {"name": "pascal", "benchmark": "pascal", "root": "data/pascal",
                     "coco_folds": "interleaved", "scale_range": [0.9, 1.1]},
         "sam2": {"name": "small", "config": "sam2_hiera_s.yaml",
                  "checkpoint": "pretrained/sam2_hiera_small.pt"},
         "model": {"_target_": "fssam.models.fssam.build_model", "image_size": 512,
                   "run": {"name": "FSSAM", "variant": "small", "input_size": 512,
                           "checks": "fssam.models.fssam.config.check_config"},
                   "optim": {"_target_": "fssam.models.fssam.recipe.fssam_optimizers",
                             "lr": 1e-3, "power": 0.9}},
         "trainer": {"epochs": 300, "num_workers": 8, "amp": "bf16", "save_every": None}}


def changed(**edits) -> dict:
    config = copy.deepcopy(SAVED)
    for dotted, value in edits.items():
        *parents, key = dotted.split("__")
        node = config
        for part in parents:
            node = node[part]
        node[key] = value
    return config


def test_bookkeeping_and_code_locations_pass():
    current = changed(dataset__root="/scratch/pascal", trainer__num_workers=2,
                      trainer__save_every=500, exp_dir="/runs",
                      model___target_="fssam.models.build_fssam")
    accepted = check_resume_config(SAVED, current, path="last.pt")
    assert {key for key, _, _ in accepted} == {"dataset.root", "trainer.num_workers",
                                               "trainer.save_every", "exp_dir",
                                               "model._target_"}


@pytest.mark.parametrize("key, value, shown", [
    ("shot", 5, "shot: 1 in the checkpoint, 5 now"),
    ("split", 2, "split: 0 in the checkpoint, 2 now"),
    ("seed", 0, "seed: 321 in the checkpoint, 0 now"),
    ("model__run__name", "HMNet", "model.run.name: 'FSSAM' in the checkpoint, 'HMNet' now"),
    ("sam2__name", "large", "sam2.name: 'small' in the checkpoint, 'large' now"),
    ("dataset__name", "coco", "dataset.name: 'pascal' in the checkpoint, 'coco' now"),
])
def test_another_runs_checkpoint_is_refused_even_with_leave(key, value, shown):
    with pytest.raises(ResumeMismatchError, match="another run's checkpoint") as caught:
        check_resume_config(SAVED, changed(**{key: value}), path="exp/a/last.pt",
                            allowed=[key.replace("__", ".")])
    assert shown in str(caught.value) and "exp/a/last.pt" in str(caught.value)


def test_run_altering_changes_are_listed_with_the_flag_that_allows_them():
    current = changed(trainer__epochs=400, model__optim__lr=5e-4, trainer__amp="fp16")
    with pytest.raises(ResumeMismatchError) as caught:
        check_resume_config(SAVED, current, path="last.pt")
    message = str(caught.value)
    assert "model.optim.lr: 0.001 in the checkpoint, 0.0005 now" in message
    assert "trainer.epochs: 300 in the checkpoint, 400 now" in message
    assert ("trainer.resume_allow_changes=[model.optim.lr,trainer.amp,trainer.epochs]"
            in message)
    accepted = check_resume_config(SAVED, current, path="last.pt",
                                   allowed=["trainer.epochs", "trainer.amp", "model.optim"])
    assert len(accepted) == 3  # a prefix allows the keys below it


def test_keys_added_or_removed_since_the_checkpoint_pass():
    current = changed()
    current["trainer"]["dist_timeout_s"] = 600
    current["model"]["new_option"] = True
    del current["trainer"]["amp"]
    assert check_resume_config(SAVED, current, path="last.pt") == []


def legacy(config: dict) -> dict:
    """``config`` in the layout of checkpoints written before the model's run keys had
    their own node and the dataset's keys were renamed."""
    old = copy.deepcopy(config)
    old["model"].update(old["model"].pop("run"))
    old["model"].pop("input_size")
    old["dataset"]["protocol"] = old["dataset"].pop("benchmark")
    old["dataset"]["coco_split"] = old["dataset"].pop("coco_folds")
    return old


def test_a_checkpoint_of_the_earlier_layout_is_read_in_todays():
    assert check_resume_config(legacy(SAVED), changed(), path="last.pt") == []
    with pytest.raises(ResumeMismatchError, match="model.run.name: 'FSSAM' in the checkpoint"):
        check_resume_config(legacy(SAVED), changed(model__run__name="HMNet"), path="last.pt")
    with pytest.raises(ResumeMismatchError, match="dataset.benchmark: 'pascal' in the"):
        check_resume_config(legacy(SAVED), changed(dataset__benchmark="coco"), path="last.pt")
