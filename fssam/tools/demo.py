"""The demo (``make demo``): FSSAM learns few-shot segmentation on CPU in a few minutes.

1. Generates the synthetic PASCAL-layout dataset into ``data/toy`` if it is missing.
2. Trains 1-shot fold 0 with the micro SAM 2 and a tiny random DINOv2 (nothing is
   downloaded), through train.py's code path: 40 epochs of 20 iterations (batch 8,
   AdamW 2e-3 with poly decay), one model thread and one data-loading process.
3. Tests on fold 0's novel classes, through test.py's code path, on the same episodes:
   the trained model, the untrained model and the thresholded prior alone
   (``prior_fg >= 0.5``), and prints the three results.

The run folder (``exp/demo/toy/FSSAM_tiny_dino/split0/1shot/micro``) holds the training
records, ``results.json`` of the trained model, the baselines' ``results_*.json``,
``demo.json`` (the three results and the run time) and PNG overlays in ``vis/``.
Exits with status 1 when the trained model does not beat both baselines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
GROUPS = ["dataset=toy", "sam2=micro", "model=fssam_tiny_dino", "split=0", "shot=1"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data/toy", help="synthetic dataset folder")
    parser.add_argument("--exp-dir", default="exp/demo", help="experiment folder of the demo")
    parser.add_argument(
        "--epochs",
        type=int,
        default=40,
        help="training epochs (the poly learning-rate decay spans them)",
    )
    parser.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="stop training after this many iterations (smoke tests)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--episodes", type=int, default=300, help="test episodes per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[321, 123])
    parser.add_argument("--vis", type=int, default=8, help="overlays of the first N episodes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes")
    parser.add_argument(
        "--allow-no-gain",
        action="store_true",
        help="exit 0 even when training did not beat the baselines (smoke tests)",
    )
    return parser.parse_args(argv)


def ensure_dataset(root: Path) -> None:
    """Generate the synthetic PASCAL-layout dataset unless it is already there."""
    from fssam.tools.toy import make_toy_pascal

    if (root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file():
        return
    print(f"generating the synthetic dataset in {root} ...", flush=True)
    make_toy_pascal(root, seed=0)


def shared_overrides(args: argparse.Namespace) -> list[str]:
    return GROUPS + [
        f"dataset.root={Path(args.root).resolve()}",
        f"exp_dir={Path(args.exp_dir).resolve()}",
        "trainer.device=cpu",
        "trainer.amp=none",
        f"trainer.num_threads={args.threads}",
        f"trainer.num_workers={args.workers}",
    ]


def train_overrides(args: argparse.Namespace) -> list[str]:
    return shared_overrides(args) + [
        f"trainer.batch_size={args.batch_size}",
        f"model.optim.lr={args.lr}",
        f"trainer.epochs={args.epochs}",
        f"trainer.max_iterations={args.max_iterations or 'null'}",
        "trainer.val_per_epoch=0",
        "trainer.log_every=20",
    ]


RUNS = ("trained", "untrained", "prior")
"""The three test runs: the trained model and the two baselines."""


def episode_overrides(args: argparse.Namespace) -> list[str]:
    """The test episodes, the same for the three runs."""
    return [
        f"episodes={args.episodes}",
        f"seeds=[{','.join(map(str, args.seeds))}]",
        f"batch_size={args.batch_size}",
    ]


def run_overrides(args: argparse.Namespace, run: str) -> list[str]:
    """What sets ``run`` apart: the trained model's last checkpoint (and overlays), or the
    model at its initialisation (alone or its prior alone) with its own results file."""
    if run == "trained":
        return ["checkpoint=${run_dir}/last.pt", f"vis={args.vis}"]
    extra = ["prior_only=true"] if run == "prior" else []
    return [
        "checkpoint_format=none",
        f"results_file=${{run_dir}}/results_{run}.json",
        *extra,
    ]


def test_overrides(args: argparse.Namespace, run: str) -> list[str]:
    return [
        *shared_overrides(args),
        *episode_overrides(args),
        "prior_cache=true",
        "trainer.progress=false",
        *run_overrides(args, run),
    ]


def fresh_run(cfg: Any) -> Path:
    """The run folder of ``cfg``, emptied (train.py would resume it)."""
    run_dir = Path(cfg.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return run_dir


ROWS = ("release", "seeds")
"""The two rows of a test: the release protocol's episodes, the mean over our seeds."""


def score_runs(overrides: Callable[[str], list[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """mIoU and FB-IoU of the three test runs in both rows (``ROWS``), each through
    test.py's code with the test config composed from ``overrides(run)``."""
    from fssam.engine.config import compose_config
    from fssam.engine.tester import run_test

    scores = {}
    for run in RUNS:
        results = run_test(compose_config("test", overrides(run)))
        release, summary = results["release"], results["summary"]
        scores[run] = {
            "release": {"miou": release["miou"], "fbiou": release["fbiou"]},
            "seeds": {"miou": summary["miou"]["mean"], "fbiou": summary["fbiou"]["mean"]},
        }
    return scores


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Data, training, three tests; returns the three summaries, run folder and seconds."""
    from fssam.engine.config import compose_config
    from fssam.engine.training import train

    start = time.perf_counter()
    ensure_dataset(Path(args.root))
    train_cfg = compose_config("train", train_overrides(args))
    run_dir = fresh_run(train_cfg)  # a fresh run every time
    iterations = train(train_cfg)["iteration"]
    trained_seconds = time.perf_counter() - start
    scores = score_runs(lambda run: test_overrides(args, run))
    return {
        "scores": scores,
        "run_dir": str(run_dir),
        "iterations": iterations,
        "train_seconds": round(trained_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "settings": vars(args),
    }


def format_table(demo: dict[str, Any], method: str = "FSSAM") -> str:
    """The three results of ``demo["scores"]`` as a table: mIoU and FB-IoU of the release
    protocol's episodes and of our seeds (mean)."""
    names = {
        "trained": f"trained {method}",
        "untrained": f"untrained {method}",
        "prior": "prior_fg >= 0.5 alone",
    }
    lines = [f"{'':24}{'release protocol':>17}{'seeds (mean)':>19}",
             f"{'':24}{'mIoU':>8}{'FB-IoU':>9}{'mIoU':>10}{'FB-IoU':>9}"]
    for run, name in names.items():
        row = "".join(f"{pad}{score['miou']:8.2f}{score['fbiou']:9.2f}"
                      for pad, score in zip(("", "  "), (demo["scores"][run][r] for r in ROWS)))
        lines.append(f"{name:24}{row}")
    return "\n".join(lines)


def learned(demo: dict[str, Any]) -> bool:
    """The trained model beats both baselines on mIoU and FB-IoU, in both rows."""
    s = demo["scores"]
    return all(s["trained"][r][m] > max(s["untrained"][r][m], s["prior"][r][m])
               for r in ROWS for m in ("miou", "fbiou"))


def exit_status(demo: dict[str, Any], allow_no_gain: bool) -> int:
    """0 when the trained model beat both baselines (or ``allow_no_gain``), else 1 with a
    message on stderr."""
    if demo["learned"]:
        return 0
    print("the trained model did NOT beat both baselines", file=sys.stderr)
    return 0 if allow_no_gain else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    demo = run_demo(args)
    demo["learned"] = learned(demo)
    Path(demo["run_dir"], "demo.json").write_text(json.dumps(demo, indent=1))
    print(
        f"\nFSSAM demo: 1-shot fold 0 of the synthetic dataset, {demo['iterations']} training "
        f"iterations, {args.episodes} test episodes per row (the release protocol's, and each of "
        f"{len(args.seeds)} seeds), "
        f"{demo['seconds']:.0f} s in all ({demo['train_seconds']:.0f} s to data + training)"
    )
    print(format_table(demo))
    print(f"run folder: {demo['run_dir']} (results.json, vis/, demo.json)")
    return exit_status(demo, args.allow_no_gain)


if __name__ == "__main__":
    sys.exit(main())
