"""The HMNet demo (``make demo-hmnet``): both of HMNet's training stages learn on CPU in minutes.

1. Generates the synthetic PASCAL-layout dataset into ``data/toy`` if it is missing.
2. Stage 1, through train.py's code (``model=pspnet_tiny``): a tiny PSPNet base learner
   (VGG layout at 1/8 of the widths, random initialisation) segments fold 0's 15 base
   classes, 96 px crops, 30 epochs of SGD; validated once at the end (base-class mIoU).
3. Stage 2, through train.py's code (``model=hmnet_tiny``): a tiny 1-shot HMNet (grid 16,
   two Mamba blocks) on that frozen base learner, HMNet's two optimisers and loss, 8 epochs.
4. Tests on fold 0's novel classes, through test.py's code and on the same episodes: the
   trained HMNet, the untrained one (meta learner at its initialisation, same base
   learner) and its prior alone (``prior_fg >= 0.5``), and prints the three results.

Where the demo departs from the papers' recipes, for a random backbone and a few minutes
of CPU: both base-learner groups at lr 0.05 (BAM: 2.5e-4 / 2.5e-3 on an ImageNet
backbone), AdamW at 1e-3 (HMNet: 6e-5), crops of 96 px with scale 0.4-0.7 (the synthetic
images are 160-256 px; validation and testing see them whole at 96 px).
Run folders: ``exp/demo/toy/PSPNet_tiny/split0/vgg`` and
``exp/demo/toy/HMNet_tiny/split0/1shot/vgg``
(``demo.json``: the results, the base learner's mIoU and the run time).
Exits with status 1 when the trained model does not beat both baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fssam.tools import demo as shared
BACKBONE = "vgg"
BASE_RUN_DIR = "${exp_dir}/${dataset.name}/${model.run.name}/split${split}/${model.run.variant}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data/toy", help="synthetic dataset folder")
    parser.add_argument("--exp-dir", default="exp/demo", help="experiment folder of the demo")
    parser.add_argument("--base-epochs", type=int, default=30, help="base-learner epochs")
    parser.add_argument("--epochs", type=int, default=8, help="HMNet meta-training epochs")
    parser.add_argument("--max-iterations", type=int, default=None,
                        help="stop each stage after this many iterations (smoke tests)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="crop and test side")
    parser.add_argument("--base-lr", type=float, default=0.05)
    parser.add_argument("--adamw-lr", type=float, default=1e-3,
                        help="AdamW's rate at --batch-size (the recipe's base rate is scaled by "
                             "batch // 2, as in the release)")
    parser.add_argument("--episodes", type=int, default=300, help="test episodes per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[321, 123])
    parser.add_argument("--vis", type=int, default=8, help="overlays of the first N episodes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes")
    parser.add_argument("--allow-no-gain", action="store_true",
                        help="exit 0 even when training did not beat the baselines (smoke tests)")
    return parser.parse_args(argv)


def shared_overrides(args: argparse.Namespace) -> list[str]:
    return ["dataset=toy", "split=0", f"dataset.root={Path(args.root).resolve()}",
            f"exp_dir={Path(args.exp_dir).resolve()}", "dataset.scale_range=[0.4,0.7]",
            f"model.backbone={BACKBONE}", "trainer.device=cpu",
            "trainer.amp=none", f"trainer.num_threads={args.threads}",
            f"trainer.num_workers={args.workers}"]


def schedule(args: argparse.Namespace, epochs: int) -> list[str]:
    return [f"trainer.batch_size={args.batch_size}", f"trainer.epochs={epochs}",
            f"trainer.max_iterations={args.max_iterations or 'null'}", "trainer.log_every=20"]


def base_overrides(args: argparse.Namespace) -> list[str]:
    """Stage 1: the base learner, validated once at the end."""
    return ["model=pspnet_tiny", *shared_overrides(args), f"model.run.input_size={args.size}",
            f"model.optim.backbone_lr={args.base_lr}", f"model.optim.head_lr={args.base_lr}",
            f"run_dir={BASE_RUN_DIR}", *schedule(args, args.base_epochs),
            "trainer.val_per_epoch=1", f"trainer.val_start_epoch={args.base_epochs - 1}",
            f"trainer.val_batch_size={args.batch_size}"]


def hmnet_overrides(args: argparse.Namespace, base_learner: Path) -> list[str]:
    """The tiny 1-shot HMNet on ``base_learner`` (training and testing)."""
    return ["model=hmnet_tiny", "shot=1", *shared_overrides(args), f"model.image_size={args.size}",
            f"model.base_learner_checkpoint={base_learner}"]


def meta_overrides(args: argparse.Namespace, base_learner: Path) -> list[str]:
    """Stage 2: meta-training, no validation."""
    adamw_lr = args.adamw_lr / max(1, args.batch_size // 2)  # the recipe scales it back
    return [*hmnet_overrides(args, base_learner), f"model.optim.adamw_lr={adamw_lr}",
            *schedule(args, args.epochs), "trainer.val_per_epoch=0"]


def test_overrides(args: argparse.Namespace, base_learner: Path, run: str) -> list[str]:
    return [*hmnet_overrides(args, base_learner), *shared.episode_overrides(args),
            "trainer.progress=false", *shared.run_overrides(args, run)]


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Data, both stages, three tests; returns the summaries, run folders and seconds."""
    from fssam.engine.config import compose_config
    from fssam.engine.training import train

    start = time.perf_counter()
    shared.ensure_dataset(Path(args.root))
    base_cfg = compose_config("train", base_overrides(args))
    base_dir = shared.fresh_run(base_cfg)
    base = train(base_cfg)
    base_seconds = time.perf_counter() - start
    base_learner = base_dir / "last.pt"
    meta_cfg = compose_config("train", meta_overrides(args, base_learner))
    run_dir = shared.fresh_run(meta_cfg)
    iterations = train(meta_cfg)["iteration"]
    trained_seconds = time.perf_counter() - start
    scores = shared.score_runs(lambda run: test_overrides(args, base_learner, run))
    return {"scores": scores, "base_miou": base["best_miou"], "base_run_dir": str(base_dir),
            "base_iterations": base["iteration"], "run_dir": str(run_dir),
            "iterations": iterations, "base_seconds": round(base_seconds, 1),
            "train_seconds": round(trained_seconds, 1),
            "seconds": round(time.perf_counter() - start, 1), "settings": vars(args)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    demo = run_demo(args)
    demo["learned"] = shared.learned(demo)
    Path(demo["run_dir"], "demo.json").write_text(json.dumps(demo, indent=1))
    print(f"\nHMNet demo: 1-shot fold 0 of the synthetic dataset; base learner "
          f"{demo['base_iterations']} iterations (base-class mIoU {demo['base_miou']:.2f}), "
          f"HMNet {demo['iterations']} iterations; {args.episodes} test episodes per row (the "
          f"release protocol's, and each of {len(args.seeds)} seeds); {demo['seconds']:.0f} s "
          f"in all ({demo['base_seconds']:.0f} s to data + "
          f"base learner, {demo['train_seconds']:.0f} s to data + both stages)")
    print(shared.format_table(demo, "HMNet"))
    print(f"run folders: {demo['base_run_dir']}, {demo['run_dir']} (results.json, vis/, "
          f"demo.json)")
    return shared.exit_status(demo, args.allow_no_gain)


if __name__ == "__main__":
    sys.exit(main())
