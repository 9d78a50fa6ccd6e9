"""Worker for test_evaluate_dist.py: evaluate the micro model on toy episodes, write JSON.

Run with plain ``python`` (one process) or under ``torchrun`` (gloo, CPU); rank 0 writes
the metrics of every rank (they must agree) to the output file. With ``--reuse``, three
passes (no reuse, a cold and a warm encoder cache) and whether each rank's logits agree
bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from fssam.data import build_dataset
from fssam.data.folds import novel_classes
from fssam.engine.evaluate import build_eval_loader, run_evaluation
from fssam.engine.feature_cache import FeatureCache, PassMemo
from fssam.engine.prior_cache import PriorCache
from fssam.models.fssam import build_model

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
SIZE = 128


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--root", "--lists", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--cache")
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    dataset = build_dataset(
        dataset="pascal",
        root=args.root,
        fold=0,
        shot=args.shot,
        mode="val",
        image_size=SIZE,
        num_episodes=args.episodes,
        seed=321,
        cache_dir=args.lists,
    )
    torch.manual_seed(0)
    model = build_model(
        sam2_config=str(PARITY / "sam2_micro_v1.yaml"),
        sam2_checkpoint=str(PARITY / "micro_weights.pt"),
        image_size=SIZE,
        dino_checkpoint=None,
        dino_input_size=56,
        dino_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2},
    )
    cache = None
    if args.cache:
        cache = PriorCache(
            args.cache,
            {
                "dataset": "pascal",
                "fold": 0,
                "shot": args.shot,
                "episodes": dataset.fingerprint(),
                "image_size": SIZE,
                "support_annotation": "mask",
                "coco_folds": None,
                "dino_variant": "vitb14",
                "dino_input_size": 56,
                "dino_weights": "test",
            },
        )
    loader = build_eval_loader(dataset, batch_size=args.batch_size, num_workers=0)
    logits: list[torch.Tensor] = []
    model.register_forward_hook(lambda m, i, out: logits.append(out["logits"].clone()))

    def evaluate(**reuse) -> tuple[dict, list[torch.Tensor]]:
        logits.clear()
        metrics = run_evaluation(model, loader, class_ids=novel_classes("pascal", 0),
                                 device="cpu", prior_cache=cache, progress=False, **reuse)
        return metrics, list(logits)

    metrics, reference = evaluate()
    record = {"metrics": metrics, "episodes": len(loader.sampler)}
    if args.reuse:
        features = FeatureCache(size_gb=1)
        for name in ("cold", "warm"):
            got, got_logits = evaluate(feature_cache=features, memo=PassMemo(size_gb=1))
            record[name] = {"metrics": got, "stats": features.stats(), "identical": len(
                got_logits) == len(reference) and all(map(torch.equal, got_logits, reference))}
    if dist.is_initialized():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, record)
        dist.destroy_process_group()
    else:
        gathered = [record]
    if int(os.environ.get("RANK", 0)) == 0:
        Path(args.out).write_text(json.dumps(gathered))


if __name__ == "__main__":
    main()
