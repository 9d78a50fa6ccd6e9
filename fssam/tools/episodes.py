"""Write the evaluation episodes of a protocol as CSV: which query, class and supports.

The rows test.py scores, for the settings of its config (the same Hydra overrides):

    python scripts/episodes.py --out episodes.csv dataset=pascal split=0 shot=1
    python scripts/episodes.py --protocol seeds --out seeds.csv dataset=coco split=2 shot=5
    python scripts/episodes.py --out e.csv dataset=coco dataset.val_list=lists/coco/val.txt

Columns: protocol, seed, index, query (image name), class, supports (image names in the
order the model receives them, separated by spaces). ``--protocol release`` (default)
writes the releases' test episodes (``release_seed``, ``model.release.workers``); ``seeds``
one block per seed of ``seeds``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from fssam.data import build_dataset
from fssam.data.protocol import PROTOCOLS, RELEASE
from fssam.engine.config import compose_config
from fssam.engine.config import release_workers
from fssam.engine.tester import protocol_passes
from fssam.engine.config import ConfigError, dataset_kwargs, validate_config

FIELDS = ("protocol", "seed", "index", "query", "class", "supports")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--protocol", choices=PROTOCOLS, default=RELEASE)
    p.add_argument("overrides", nargs="*", help="Hydra overrides of configs/test.yaml")
    return p.parse_args(argv)


def episode_rows(overrides: Sequence[str], protocol: str) -> list[dict[str, object]]:
    """The rows of ``protocol``'s episodes for the test config of ``overrides``."""
    cfg = compose_config("test", [*overrides, f"protocols=[{protocol}]"])
    validate_config(cfg)
    rows = []
    for name, seed in protocol_passes(cfg):
        dataset = build_dataset(**dataset_kwargs(
            cfg, mode="val", num_episodes=int(cfg.episodes), seed=seed, protocol=name,
            release_workers=release_workers(cfg)))
        stem = [Path(r.image).stem for r in dataset.records]
        rows += [{"protocol": name, "seed": seed, "index": i, "query": stem[e.query],
                  "class": e.class_id, "supports": " ".join(stem[j] for j in e.supports)}
                 for i, e in enumerate(dataset.episodes)]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows = episode_rows(args.overrides, args.protocol)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} episodes written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
