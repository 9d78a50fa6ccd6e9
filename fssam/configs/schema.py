"""Structured schemas of the configs, registered with Hydra's ConfigStore.

Hydra merges every YAML file over its schema, so a key that does not exist, a value of the
wrong type or a value outside a set of choices fails at composition with the key named
(``Invalid value 'fp8', expected one of [bf16, fp16, none]  full_key: trainer.amp``).
What a type cannot say (ranges, relations between keys) is checked by
``fssam.engine.config.validate_config`` and the method's ``model.run.checks``.

Every set of choices is defined once, where its meaning lives (``fssam.data.folds``,
``fssam.data.protocol``, ``fssam.models.<method>``...); the enumerations here are made from
those tuples. A choice behaves as its string (``cfg.trainer.amp == "bf16"``).

The model group: builder arguments at ``model.*`` (``instantiate`` receives them), and the
three parts the builder never sees: ``model.run`` (what a run is named, what it trains on,
the side its images are resized to, its checks), ``model.release`` (the authors' release)
and ``model.optim`` (the training recipe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from fssam.data.episodic import SUPPORT_ANNOTATIONS
from fssam.data.benchmarks import NAMES as BENCHMARKS
from fssam.data.folds import COCO_FOLDS
from fssam.data.protocol import PROTOCOLS
from fssam.engine.build import WEIGHTS
from fssam.engine.config import AMP_MODES, DEVICES, TASKS
from fssam.engine.feature_cache import STORAGES as CACHE_STORAGES
from fssam.models.fssam.config import DINO_VARIANTS, REFINE_VERSIONS, SAM2_NAMES
from fssam.models.hmnet.backbones import BACKBONES


class Choice(str, Enum):
    """A config value among fixed strings; it formats and compares as its string."""

    def __str__(self) -> str:
        return str(self.value)


def choices(name: str, values: Sequence[str]) -> type[Choice]:
    """The enumeration ``name`` of ``values`` (member names are the values)."""
    return Choice(name, [(v, v) for v in values])  # type: ignore[return-value]


Amp = choices("Amp", AMP_MODES)
Device = choices("Device", DEVICES)
CacheStorage = choices("CacheStorage", CACHE_STORAGES)
EvalProtocol = choices("EvalProtocol", PROTOCOLS)
Benchmark = choices("Benchmark", BENCHMARKS)
CocoFolds = choices("CocoFolds", COCO_FOLDS)
SupportAnnotation = choices("SupportAnnotation", SUPPORT_ANNOTATIONS)
CheckpointFormat = choices("CheckpointFormat", WEIGHTS)
Task = choices("Task", TASKS)
Sam2Name = choices("Sam2Name", SAM2_NAMES)
DinoVariant = choices("DinoVariant", DINO_VARIANTS)
RefineVersion = choices("RefineVersion", REFINE_VERSIONS)
Backbone = choices("Backbone", BACKBONES)


# -- groups ---------------------------------------------------------------------------------

@dataclass
class DatasetConfig:
    name: str = MISSING
    benchmark: Benchmark = MISSING  # type: ignore[valid-type]
    root: str = MISSING
    coco_folds: CocoFolds = CocoFolds.interleaved  # type: ignore[valid-type,attr-defined]
    support_annotation: SupportAnnotation = SupportAnnotation.mask  # type: ignore
    support_points: int = 20  # clicks per support when support_annotation=points
    scale_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    train_list: Optional[str] = None
    val_list: Optional[str] = "standard"
    cache_dir: Optional[str] = None


@dataclass
class Sam2Config:
    name: Sam2Name = MISSING  # type: ignore[valid-type]
    config: str = MISSING
    checkpoint: Optional[str] = None
    image_size: int = 512


@dataclass
class EvalCacheConfig:
    enabled: bool = True
    size_gb: float = 8.0
    storage: CacheStorage = CacheStorage.cpu  # type: ignore[valid-type,attr-defined]
    memo_gb: float = 1.0


@dataclass
class TrainerConfig:
    batch_size: int = 2
    total_batch_size: Optional[int] = None
    epochs: int = 50
    max_iterations: Optional[int] = None
    early_stop_patience: Optional[int] = None
    val_per_epoch: int = 2
    val_start_epoch: int = 0
    val_mid_epoch_from: int = 0
    val_mid_epoch_delay: int = 1
    val_episodes: int = 1000
    val_seed: int = 321
    val_protocol: EvalProtocol = EvalProtocol.release  # type: ignore[valid-type,attr-defined]
    val_batch_size: int = 2
    val_prior_cache: Optional[str] = None
    eval_cache: EvalCacheConfig = field(default_factory=EvalCacheConfig)
    amp: Amp = Amp.bf16  # type: ignore[valid-type,attr-defined]
    device: Device = Device.auto  # type: ignore[valid-type,attr-defined]
    num_workers: int = 8
    num_threads: Optional[int] = None
    save_every: Optional[int] = None
    log_every: int = 20
    resume: bool = True
    # config keys (or prefixes) a resume may change from the checkpoint's (resume_check.py)
    resume_allow_changes: list[str] = field(default_factory=list)
    dist_timeout_s: float = 1800.0  # a collective waiting longer fails, naming the lost ranks
    deterministic: bool = False
    progress: bool = True


# -- the model group ------------------------------------------------------------------------

@dataclass
class RunInfo:
    """What a run of the model is called and does; never passed to the builder."""

    name: str = MISSING          # run folder name (results.json "model")
    variant: str = MISSING       # run folder name below the shot (results.json "variant")
    task: Task = Task.episodes  # type: ignore[valid-type,attr-defined]
    input_size: int = MISSING    # the side the data resize images to
    checks: Optional[str] = None  # function checking ranges and relations of model.*
    weight_files: dict[str, str] = field(default_factory=dict)  # a builder file by name


@dataclass
class ReleaseInfo:
    """The authors' release of the method."""

    loader: Optional[str] = None  # reads their checkpoints (checkpoint_format=release)
    build_without: list[str] = field(default_factory=list)  # builder args their file replaces
    workers: int = 0  # their config's loader workers: decide the release protocol's episodes


@dataclass
class FSSAMOptim:
    _target_: str = "fssam.models.fssam.recipe.fssam_optimizers"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    power: float = 0.9
    one_based: bool = True


@dataclass
class FSSAMModel:
    _target_: str = "fssam.models.fssam.build_model"
    sam2_config: str = MISSING
    sam2_checkpoint: Optional[str] = None
    image_size: int = 512
    dino_variant: DinoVariant = DinoVariant.vitb14  # type: ignore[valid-type,attr-defined]
    dino_checkpoint: Optional[str] = None
    dino_input_size: int = 560
    dino_kwargs: Optional[dict[str, Any]] = None
    num_refine: int = 3
    refine_version: RefineVersion = RefineVersion.v1  # type: ignore[valid-type,attr-defined]
    legacy_kshot: bool = False
    fp32_calibration: bool = False
    run: RunInfo = field(default_factory=RunInfo)
    release: ReleaseInfo = field(default_factory=ReleaseInfo)
    optim: FSSAMOptim = field(default_factory=FSSAMOptim)


@dataclass
class HMNetOptim:
    _target_: str = "fssam.models.hmnet.recipe.hmnet_optimizers"
    sgd_lr: float = 0.005
    lr_multiplier: float = 10.0
    momentum: float = 0.9
    sgd_weight_decay: float = 1e-4
    power: float = 0.9
    adamw_lr: float = 6e-5
    adamw_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adamw_eps: float = 1e-8
    adamw_weight_decay: float = 0.01


@dataclass
class HMNetModel:
    _target_: str = "fssam.models.hmnet.build_model"
    backbone: Backbone = Backbone.resnet50  # type: ignore[valid-type,attr-defined]
    shot: int = MISSING
    num_base_classes: int = 15
    image_size: int = 473
    grid: int = 64
    base_learner_checkpoint: Optional[str] = None
    qim_per_channel_d: bool = False
    kshot_rank_fix: bool = False
    backbone_width: int = 64
    head_dim: int = 512
    reduce_dim: int = 256
    mamba_depth: int = 8
    run: RunInfo = field(default_factory=RunInfo)
    release: ReleaseInfo = field(default_factory=ReleaseInfo)
    optim: HMNetOptim = field(default_factory=HMNetOptim)


@dataclass
class PSPNetOptim:
    _target_: str = "fssam.models.hmnet.recipe.pspnet_optimizers"
    backbone_lr: float = 2.5e-4
    head_lr: float = 2.5e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    power: float = 0.9


@dataclass
class PSPNetModel:
    _target_: str = "fssam.models.hmnet.build_pspnet"
    backbone: Backbone = Backbone.resnet50  # type: ignore[valid-type,attr-defined]
    num_base_classes: int = 15
    imagenet_checkpoint: Optional[str] = None
    backbone_width: int = 64
    head_dim: int = 512
    run: RunInfo = field(default_factory=RunInfo)
    release: ReleaseInfo = field(default_factory=ReleaseInfo)
    optim: PSPNetOptim = field(default_factory=PSPNetOptim)


# -- the primary configs --------------------------------------------------------------------

@dataclass
class TrainConfig:
    split: int = 0  # the fold (the releases' and their run folders' name for it)
    shot: int = 1
    seed: int = 321
    experiment_name: Optional[str] = None
    experiment_dataset: Optional[str] = None
    exp_dir: str = "exp"
    run_dir: str = MISSING
    dataset: DatasetConfig = MISSING
    val_dataset: Optional[DatasetConfig] = None  # validation on another dataset (cross-domain)
    sam2: Sam2Config = MISSING
    model: Any = MISSING
    trainer: TrainerConfig = MISSING


@dataclass
class TestConfig(TrainConfig):
    checkpoint: str = MISSING
    checkpoint_format: CheckpointFormat = CheckpointFormat.ours  # type: ignore
    episodes: int = 1000
    protocols: list[EvalProtocol] = field(  # type: ignore[valid-type]
        default_factory=lambda: list(PROTOCOLS))
    release_seed: int = 321
    seeds: list[int] = field(default_factory=lambda: [321, 123, 456, 789, 999])
    batch_size: int = 1
    prior_cache: bool = False
    prior_cache_dir: str = MISSING
    prior_only: bool = False
    vis: int = 0
    results_file: str = MISSING


SCHEMAS = {
    (None, "train_schema"): TrainConfig,
    (None, "test_schema"): TestConfig,
    ("dataset", "schema"): DatasetConfig,
    ("sam2", "schema"): Sam2Config,
    ("trainer", "schema"): TrainerConfig,
    ("model", "fssam_schema"): FSSAMModel,
    ("model", "hmnet_schema"): HMNetModel,
    ("model", "pspnet_schema"): PSPNetModel,
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (the YAML files name them in their
    defaults lists)."""
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group, name=name, node=node)
