"""Every config composes; values are validated with errors naming the key and value."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import fssam.configs
from fssam.engine.config import validate_trainable, validation_config
from fssam.engine.config import (ConfigError, compose_config, config_changes, dataset_kwargs,
                                 model_kwargs, per_process_batch, validate_config,
                                 validate_trainer)
from fssam.engine.tester import validate_test_config
from fssam.models.fssam.sam2_adapter import resolve_config

CONFIGS = Path(fssam.configs.__file__).parent
REPO = Path(__file__).resolve().parents[1]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def load(*overrides: str):
    return compose_config("train", overrides)


def checked(*overrides: str):
    cfg = load(*overrides)
    validate_config(cfg)
    validate_trainer(cfg.trainer)
    return cfg


def test_groups_hold_the_expected_options():
    assert options("dataset") == ["coco", "deepglobe", "fss1000", "isic", "lung", "lvis", "pascal",
                                  "toy"]
    assert options("sam2") == ["base_plus", "large", "micro", "small", "tiny"]
    assert options("experiment") == ["coco_base", "coco_fssam", "coco_hmnet", "crossdomain_test",
                                     "fss1000_fssam", "lvis_fssam", "pascal_base",
                                     "pascal_crossdomain", "pascal_fssam", "pascal_hmnet"]
    assert {"fssam", "fssam_tiny_dino", "hmnet", "hmnet_tiny", "pspnet"} <= set(options("model"))
    assert {"default", "debug"} <= set(options("trainer"))


def test_fss1000_has_one_fold_and_hsnets_test():
    cfg = checked("dataset=fss1000", "shot=5", "experiment=fss1000_fssam")
    assert cfg.run_dir == "exp/fss1000/FSSAM/split0/5shot/small"
    assert (cfg.trainer.val_episodes, cfg.trainer.val_seed) == (2400, 0)
    test = compose_config("test", ["dataset=fss1000", "experiment=fss1000_fssam"])
    assert (test.episodes, test.release_seed) == (2400, 0)
    assert dataset_kwargs(test, mode="val", subset="test")["subset"] == "test"
    with pytest.raises(ConfigError, match="split=1"):
        checked("dataset=fss1000", "split=1")
    with pytest.raises(ConfigError, match="dataset.train_list"):
        checked("dataset=fss1000", "dataset.train_list=authors")


def test_lvis_has_ten_folds_and_matchers_test():
    cfg = checked("dataset=lvis", "split=9", "shot=5", "experiment=lvis_fssam")
    assert cfg.run_dir == "exp/lvis/FSSAM/split9/5shot/small"
    assert (cfg.trainer.val_episodes, cfg.trainer.val_seed) == (2300, 0)
    test = compose_config("test", ["dataset=lvis", "split=3", "experiment=lvis_fssam"])
    validate_test_config(test)
    assert (test.episodes, test.release_seed) == (2300, 0)
    with pytest.raises(ConfigError, match="split=10"):
        checked("dataset=lvis", "split=10")


@pytest.mark.parametrize("name", ["fss1000", "lvis", "isic"])
def test_hmnet_is_refused_where_it_has_no_base_learner(name):
    with pytest.raises(ConfigError, match=f"dataset='{name}': HMNet's base learner exists for "
                                          "PASCAL-5i and COCO-20i only"):
        checked(f"dataset={name}", "model=hmnet")


@pytest.mark.parametrize("name", ["deepglobe", "isic", "lung"])
def test_crossdomain_targets_test_as_patnet_and_refuse_training(name):
    test = compose_config("test", [f"dataset={name}", "experiment=crossdomain_test"])
    validate_test_config(test)
    assert (test.episodes, test.release_seed) == (600, 0)
    with pytest.raises(ConfigError, match="test-only benchmark"):
        validate_trainable(compose_config("train", [f"dataset={name}"]))


def test_crossdomain_training_takes_every_pascal_class_and_fss_validation():
    cfg = checked("dataset=pascal", "split=4", "experiment=pascal_crossdomain")
    assert (cfg.val_dataset.name, cfg.trainer.val_episodes, cfg.trainer.val_seed) == (
        "fss1000", 2400, 0)
    val = validation_config(cfg)
    assert (val.dataset.name, val.split, cfg.dataset.name, cfg.split) == ("fss1000", 0, "pascal", 4)
    assert validation_config(checked("dataset=pascal")).dataset.name == "pascal"
    with pytest.raises(ConfigError, match="split=4: is PASCAL-5i's all-classes training fold"):
        checked("dataset=pascal", "split=4")
    with pytest.raises(ConfigError, match="split=4"):
        checked("dataset=coco", "split=4")


def test_the_documented_command_composes():
    cfg = checked("dataset=coco", "split=2", "shot=5", "sam2=large")
    assert cfg.run_dir == "exp/coco/FSSAM/split2/5shot/large"
    assert cfg.model.sam2_config == "sam2_hiera_l.yaml"
    assert cfg.model.sam2_checkpoint == "pretrained/sam2_hiera_large.pt"
    assert cfg.model.image_size == 512 and cfg.dataset.coco_folds == "interleaved"
    kwargs = dataset_kwargs(cfg, mode="val", num_episodes=10, seed=321)
    assert kwargs["dataset"] == "coco" and kwargs["fold"] == 2 and kwargs["shot"] == 5
    assert kwargs["scale_range"] == (0.8, 1.25) and kwargs["seed"] == 321
    assert not {"run", "optim", "release"} & set(model_kwargs(cfg.model))


@pytest.mark.parametrize("experiment", ["coco_fssam", "pascal_fssam"])
@pytest.mark.parametrize("sam2", ["tiny", "small", "base_plus", "large"])
@pytest.mark.parametrize("shot", [1, 5])
def test_every_experiment_composes(experiment, sam2, shot):
    dataset = experiment.split("_")[0]
    cfg = checked(f"dataset={dataset}", f"sam2={sam2}", f"shot={shot}", f"experiment={experiment}")
    paper = {"pascal": (300, 100, [0.9, 1.1]), "coco": (75, 25, [0.8, 1.25])}[dataset]
    assert (cfg.trainer.epochs, cfg.trainer.early_stop_patience,
            list(cfg.dataset.scale_range)) == paper
    assert cfg.trainer.total_batch_size == 8 and per_process_batch(cfg.trainer, 4) == 2
    assert cfg.run_dir == f"exp/{dataset}/FSSAM/split0/{shot}shot/{sam2}"
    # the release's protocol: seed 321, validation after the step of batch round(n/2), at
    # mid-epoch only when epochs <= 100 or past epoch 100, on its test episodes (32 workers)
    t = cfg.trainer
    assert (cfg.seed, t.val_seed, t.val_protocol, cfg.model.release.workers) == (
        321, 321, "release", 32)
    assert (t.val_mid_epoch_from, t.val_mid_epoch_delay) == ({"pascal": 101, "coco": 0}[dataset], 1)
    assert cfg.model.optim.one_based and not cfg.model.fp32_calibration
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("dataset", ["pascal", "coco"])
@pytest.mark.parametrize("backbone", ["resnet50", "vgg"])
@pytest.mark.parametrize("shot", [1, 5])
def test_hmnet_experiments_select_the_model_and_the_dataset_sizes(dataset, backbone, shot):
    cfg = checked(f"dataset={dataset}", f"experiment={dataset}_hmnet", f"model.backbone={backbone}",
                  f"shot={shot}")
    sizes = {"pascal": (473, 64, 15, 1000), "coco": (633, 80, 60, 4000)}[dataset]
    assert (cfg.model.image_size, cfg.model.grid, cfg.model.num_base_classes) == sizes[:3]
    kwargs = model_kwargs(cfg.model)
    assert kwargs["_target_"] == "fssam.models.hmnet.build_model" and kwargs["shot"] == shot
    assert kwargs["base_learner_checkpoint"] == (
        f"pretrained/hmnet/initmodel/PSPNet/{dataset}/split0/{backbone}/best.pth")
    release = model_kwargs(cfg.model, release=True)  # the authors' file holds the whole model
    assert release["base_learner_checkpoint"] is None
    assert {k: v for k, v in release.items() if k != "base_learner_checkpoint"} == {
        k: v for k, v in kwargs.items() if k != "base_learner_checkpoint"}
    assert cfg.run_dir == f"exp/{dataset}/HMNet/split0/{shot}shot/{backbone}"
    assert dataset_kwargs(cfg, mode="val")["image_size"] == sizes[0]
    test = compose_config("test", [f"dataset={dataset}", f"experiment={dataset}_hmnet"])
    assert (test.episodes, list(test.protocols), test.release_seed) == (
        sizes[3], ["release", "seeds"], 321)
    assert test.model.release.workers == {"pascal": 8, "coco": 32}[dataset]


@pytest.mark.parametrize("dataset", ["pascal", "coco"])
def test_hmnet_experiments_hold_the_meta_training_recipe(dataset):
    # train.sh's overrides for "{dataset} 0 5 HMNet vgg"
    cfg = checked(f"dataset={dataset}", "split=0", "shot=5", "model=hmnet", "model.backbone=vgg",
                  f"experiment={dataset}_hmnet")
    t = cfg.trainer
    recipe = {"pascal": (300, 100, 8, 101, 1000, "none", [0.9, 1.1]),
              "coco": (75, None, 16, 26, 4000, "fp16", [0.8, 1.25])}[dataset]
    assert (t.epochs, t.early_stop_patience, t.total_batch_size, t.val_mid_epoch_from,
            t.val_episodes, t.amp, list(cfg.dataset.scale_range)) == recipe
    assert (t.val_per_epoch, t.val_start_epoch, t.val_seed, cfg.seed) == (2, 26, 321, 321)
    assert t.val_mid_epoch_delay == 1  # after the step of 0-based batch round(n/2)
    assert per_process_batch(t, {"pascal": 4, "coco": 8}[dataset]) == 2
    optim = OmegaConf.to_container(cfg.model.optim)
    assert optim == {"_target_": "fssam.models.hmnet.recipe.hmnet_optimizers", "sgd_lr": 0.005,
                     "lr_multiplier": 10.0, "momentum": 0.9, "sgd_weight_decay": 1e-4,
                     "power": 0.9, "adamw_lr": 6e-5, "adamw_betas": [0.9, 0.999],
                     "adamw_eps": 1e-8, "adamw_weight_decay": 0.01}
    assert "optim" not in model_kwargs(cfg.model)


@pytest.mark.parametrize("dataset", ["pascal", "coco"])
@pytest.mark.parametrize("backbone", ["resnet50", "vgg"])
def test_base_learner_experiments_compose_to_bams_recipe(dataset, backbone):
    # train.sh's overrides for "{dataset} 3 base HMNet {backbone}"
    cfg = checked(f"dataset={dataset}", "split=3", "model=pspnet", f"model.backbone={backbone}",
                  f"experiment={dataset}_base")
    assert cfg.run_dir == f"exp/{dataset}/PSPNet/split3/{backbone}"
    assert cfg.model.run.task == "base_classes" and cfg.model.run.input_size == 417
    assert cfg.model.num_base_classes == {"pascal": 15, "coco": 60}[dataset]
    file = {"resnet50": "resnet50_v2.pth", "vgg": "vgg16_bn.pth"}[backbone]
    assert cfg.model.imagenet_checkpoint == f"pretrained/hmnet/initmodel/{file}"
    t = cfg.trainer
    assert (t.epochs, t.early_stop_patience) == ({"pascal": 100, "coco": 20}[dataset], 75)
    assert (t.total_batch_size, t.val_per_epoch, t.amp, cfg.seed) == (12, 1, "none", 321)
    assert per_process_batch(t, 4) == 3 and list(cfg.dataset.scale_range) == [0.5, 2.0]
    lrs = (cfg.model.optim.backbone_lr, cfg.model.optim.head_lr)
    assert lrs == {"pascal": (2.5e-4, 2.5e-3), "coco": (2.5e-3, 2.5e-3)}[dataset]
    kwargs = model_kwargs(cfg.model)
    assert not {"run", "optim", "release"} & set(kwargs) and "image_size" not in kwargs
    assert cfg.model.run.input_size == 417 and cfg.model.run.task == "base_classes"


@pytest.mark.parametrize("override, message", [
    ("model.grid=62", "model.grid=62: must be a multiple of 4"),
    ("model.num_base_classes=60", "model.num_base_classes=60: pascal has 15 base classes"),
    ("model.optim.adamw_lr=0", "model.optim.adamw_lr=0.0: must be > 0"),
    ("model.optim.sgd_weight_decay=-1", "model.optim.sgd_weight_decay=-1.0: must be >= 0"),
])
def test_invalid_hmnet_values_name_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message):
        checked("model=hmnet", override)


@pytest.mark.parametrize("override, message", [
    ("model.num_base_classes=16", "model.num_base_classes=16: pascal has 15 base classes"),
    ("model.optim.head_lr=0", "model.optim.head_lr=0.0: must be > 0"),
])
def test_invalid_base_learner_values_name_key_and_value(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        checked("experiment=pascal_base", override)


def test_test_py_refuses_a_base_learner():
    with pytest.raises(ConfigError, match="model.run.task=base_classes: test.py evaluates few-shot"):
        validate_test_config(compose_config("test", ["model=pspnet"]))


@pytest.mark.parametrize("group, option", [(g, o) for g in ("dataset", "sam2", "model", "trainer",
                                                            "debug") for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = checked(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)


def test_micro_and_debug_presets():
    cfg = checked("debug=cpu")
    assert (cfg.dataset.name, cfg.sam2.name, cfg.model.dino_checkpoint) == ("toy", "micro", None)
    assert cfg.sam2.config == "sam2_micro.yaml" and cfg.trainer.max_iterations == 4
    assert resolve_config(cfg.sam2.config).is_file()


@pytest.mark.parametrize("override, message", [
    ("shot=0", "shot=0: must be >= 1"),
    ("split=5", "split=5: must be <= 4"),  # PASCAL: 4 is the all-classes fold
    ("split=4 dataset=coco", "split=4: must be <= 3"),
    ("split=-1", "split=-1: must be >= 0"),
    ("dataset.support_points=0", "dataset.support_points=0: must be >= 1"),
    ("dataset.scale_range=[1.2,0.9]", "dataset.scale_range="),
    ("sam2.image_size=500", "sam2.image_size=500: must be a multiple of 32"),
    ("model.dino_input_size=500", "model.dino_input_size=500: must be a multiple of 14"),
    ("trainer.batch_size=0", "trainer.batch_size=0: must be >= 1"),
    ("model.optim.lr=-1", "model.optim.lr=-1.0: must be > 0"),
    ("model.optim.weight_decay=-1", "model.optim.weight_decay=-1.0: must be >= 0"),
    ("trainer.val_start_epoch=-1", "trainer.val_start_epoch=-1: must be >= 0"),
    ("trainer.val_mid_epoch_delay=-1", "trainer.val_mid_epoch_delay=-1: must be >= 0"),
    ("trainer.early_stop_patience=0", "trainer.early_stop_patience=0: must be >= 1"),
    ("trainer.eval_cache.size_gb=-1", "trainer.eval_cache.size_gb=-1.0: must be >= 0"),
    ("dataset.val_list=''", "dataset.val_list='': must name a list"),
    ("dataset.train_list=authors dataset=coco", "the authors' list is PASCAL's"),
])
def test_invalid_values_name_key_and_value(override, message):
    with pytest.raises(ConfigError) as error:
        checked(*override.split())
    assert message in str(error.value)


@pytest.mark.parametrize("override, key, value", [
    ("shot=two", "shot", "two"),
    ("trainer.epochs=1.5", "trainer.epochs", "1.5"),
    ("dataset.coco_folds=random", "dataset.coco_folds", "random"),
    ("dataset.support_annotation=polygon", "dataset.support_annotation", "polygon"),
    ("dataset.benchmark=voc", "dataset.benchmark", "voc"),
    ("sam2.name=huge", "sam2.name", "huge"),
    ("model.refine_version=v3", "model.refine_version", "v3"),
    ("model.dino_variant=vits8", "model.dino_variant", "vits8"),
    ("model.fp32_calibration=maybe", "model.fp32_calibration", "maybe"),
    ("trainer.amp=fp8", "trainer.amp", "fp8"),
    ("trainer.device=tpu", "trainer.device", "tpu"),
    ("trainer.eval_cache.enabled=maybe", "trainer.eval_cache.enabled", "maybe"),
    ("trainer.eval_cache.memo_gb=lots", "trainer.eval_cache.memo_gb", "lots"),
    ("trainer.eval_cache.storage=disk", "trainer.eval_cache.storage", "disk"),
    ("trainer.val_protocol=theirs", "trainer.val_protocol", "theirs"),
    ("trainer.lrr=1", "trainer.lrr", "1"),
    ("model=hmnet model.backbone=resnet101", "model.backbone", "resnet101"),
    ("model=pspnet model.image_size=417", "model.image_size", "417"),
])
def test_schemas_refuse_wrong_types_and_choices_naming_the_key(override, key, value):
    with pytest.raises(Exception) as error:
        load(*override.split())
    text = str(error.value)
    assert key.rsplit(".", 1)[-1] in text and value in text, text


def test_experiment_must_match_dataset():
    with pytest.raises(ConfigError, match="dataset='pascal'.*coco_fssam.*dataset=coco"):
        checked("experiment=coco_fssam")


def test_total_batch_must_divide_over_processes():
    cfg = checked("experiment=pascal_fssam")
    assert per_process_batch(cfg.trainer, 1) == 8
    with pytest.raises(ConfigError, match="trainer.total_batch_size=8: is not divisible by the 3"):
        per_process_batch(cfg.trainer, 3)
    assert per_process_batch(load("trainer.batch_size=3").trainer, 3) == 3


def test_unknown_group_option_is_reported_by_hydra():
    with pytest.raises(Exception, match="sam2.*huge"):
        load("sam2=huge")


def _train_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_train_py_composes_the_documented_command(tmp_path):
    result = _train_py(["dataset=coco", "split=2", "shot=5", "sam2=large", "--cfg", "all",
                        "--resolve"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run_dir: exp/coco/FSSAM/split2/5shot/large" in result.stdout
    assert "dir: exp/coco/FSSAM/split2/5shot/large" in result.stdout.split("sweep:")[0]
    assert "output_subdir: null" in result.stdout and "chdir: false" in result.stdout


def test_train_py_rejects_invalid_values_before_any_work(tmp_path):
    result = _train_py(["shot=0"], tmp_path)
    assert result.returncode != 0
    assert "shot=0: must be >= 1" in result.stderr
    assert not any(tmp_path.rglob("*.pt")) and not (tmp_path / "outputs").exists()


def test_config_changes_lists_dotted_keys():
    saved = {"shot": 1, "trainer": {"epochs": 10, "lr": 1e-3}, "old": 1}
    current = {"shot": 1, "trainer": {"epochs": 20, "lr": 1e-3}, "new": 2}
    assert config_changes(saved, current) == [("new", None, 2), ("old", 1, None),
                                              ("trainer.epochs", 10, 20)]
