"""HMNet's two training stages on the synthetic data with tiny models (CPU), for
test_two_stage_training.py: the base learner through train.py's config path, HMNet through
the engine with its own recipe and loss.

Run under ``torchrun`` (gloo), every rank trains, then writes its model's state to
``<out>/rank<r>.pt``; the test imports the helpers below.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fssam.data import build_dataset
from fssam.data.folds import novel_classes
from fssam.engine.evaluate import build_eval_loader
from fssam.engine.config import compose_config
from fssam.engine.training import build_trainer
from fssam.engine.train_data import build_train_loader
from fssam.engine.trainer import Trainer, TrainSettings
from fssam.engine.validation import EpisodicValidation
from fssam.models.hmnet import build_model
from fssam.models.hmnet.model import TINY_SIZES
from fssam.models.hmnet.recipe import hmnet_optimizers
from fssam.utils.dist import DistInfo, cleanup, init_distributed
from fssam.utils.seed import seed_everything

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
BACKBONE = "vgg"
BASE_RUN = f"toy/PSPNet_tiny/split0/1shot/{BACKBONE}"


def base_overrides(root: Path, lists: Path, exp_dir: Path, *extra: str) -> list[str]:
    """The base learner (tiny VGG PSPNet, random backbone) on toy fold 0, 64 px crops."""
    return ["dataset=toy", f"dataset.root={root}", f"dataset.cache_dir={lists}",
            f"exp_dir={exp_dir}", "model=pspnet_tiny", f"model.backbone={BACKBONE}",
            f"model.run.input_size={SIZE}", "trainer.device=cpu", "trainer.amp=none",
            "trainer.batch_size=4", "trainer.epochs=2", "trainer.val_per_epoch=1",
            "trainer.val_batch_size=4", "trainer.num_workers=0", "trainer.num_threads=1",
            "trainer.log_every=1", "trainer.progress=false", *extra]


def hmnet_trainer(root: Path, lists: Path, run_dir: Path, info: DistInfo, *,
                  base_learner: Path | None = None, max_iterations: int | None = None,
                  validate: bool = True, save_every: int | None = None) -> Trainer:
    """A tiny 1-shot HMNet (VGG, grid 16) on toy fold 0 with HMNet's two optimisers, 2 episodes
    per process and step, validation on 4 episodes at each epoch's end."""
    seed_everything(0)
    model = build_model(backbone=BACKBONE, shot=1, base_learner_checkpoint=base_learner,
                        **TINY_SIZES)
    seed_everything(0, info.rank)
    common = {"dataset": "pascal", "root": str(root), "fold": 0, "shot": 1, "image_size": SIZE,
              "train_list": "all", "cache_dir": str(lists)}
    train_set = build_dataset(mode="train", seed=0, **common)
    loader = build_train_loader(train_set, batch_size=2, num_workers=0, seed=0, rank=info.rank,
                                world_size=info.world_size)
    validation = None
    if validate:
        val_set = build_dataset(mode="val", num_episodes=4, seed=321, **common)
        validation = EpisodicValidation(loader=build_eval_loader(val_set, batch_size=2,
                                                                 num_workers=0),
                                        class_ids=novel_classes("pascal", 0), progress=False)
    settings = TrainSettings(epochs=2, max_iterations=max_iterations, val_per_epoch=int(validate),
                             save_every=save_every, log_every=1, progress=False)
    return Trainer(model=model, optimizers=hmnet_optimizers(model), train_loader=loader,
                   validation=validation, run_dir=run_dir, settings=settings, dist=info,
                   config={"stage": "hmnet"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", choices=("base", "hmnet"), required=True)
    for name in ("--root", "--lists", "--exp", "--out"):
        parser.add_argument(name, type=Path, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        if args.stage == "base":
            cfg = compose_config("train", base_overrides(
                args.root, args.lists, args.exp, f"trainer.max_iterations={args.iterations}"))
            trainer = build_trainer(cfg, info)
        else:
            trainer = hmnet_trainer(args.root, args.lists, args.exp / "hmnet", info,
                                    max_iterations=args.iterations)
        trainer.fit()
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"state": trainer.model.state_dict(), "iteration": trainer.state.iteration,
                    "iterations_per_epoch": trainer.iters_per_epoch},
                   args.out / f"rank{info.rank}.pt")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
