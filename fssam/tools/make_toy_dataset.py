"""Write a synthetic few-shot segmentation dataset in the PASCAL, COCO, FSS-1000 or LVIS-92i
(COCO 2017 images and LVIS v1 jsons, then prepared) layout."""

from __future__ import annotations

import argparse
import logging
import time

from fssam.tools.toy import eligible_counts, make_toy_coco, make_toy_pascal
from fssam.tools.toy_crossdomain import LAYOUTS as CROSS_DOMAIN
from fssam.tools.toy_crossdomain import make_toy_crossdomain
from fssam.tools.toy_fss import make_toy_fss
from fssam.tools.toy_lvis import make_toy_lvis

log = logging.getLogger("make_toy_dataset")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="output folder (created if missing)")
    parser.add_argument("--layout", choices=("pascal", "coco", "fss1000", "lvis", *CROSS_DOMAIN),
                        default="pascal")
    parser.add_argument("--splits", nargs="+", choices=("train", "val", "test"),
                        default=["test"], help="fss1000: the HSNet splits whose classes are "
                        "written (default test: 240 classes x 10 images)")
    parser.add_argument("--images", type=int, default=None,
                        help="number of images, train + val (default 400 pascal, 1200 coco)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=(160, 256), metavar=("MIN", "MAX"),
                        help="range of image height and width in pixels")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: CPUs, at most 8)")
    parser.add_argument("--small-objects", type=float, default=0.0, metavar="P",
                        help="probability that an image also holds a small object (fewer than "
                             "2*32*32 pixels: present, not eligible); default 0")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.layout == "fss1000":
        start = time.perf_counter()
        make_toy_fss(args.root, splits=args.splits, seed=args.seed)
        log.info("fss1000 toy dataset written to %s in %.1f s", args.root,
                 time.perf_counter() - start)
        return
    if args.layout == "lvis":
        make_toy_lvis(args.root, seed=args.seed, workers=args.workers)
        log.info("lvis toy dataset written to %s", args.root)
        return
    if args.layout in CROSS_DOMAIN:
        make_toy_crossdomain(args.root, args.layout, seed=args.seed)
        log.info("%s toy dataset written to %s", args.layout, args.root)
        return
    make = make_toy_pascal if args.layout == "pascal" else make_toy_coco
    if not 0.0 <= args.small_objects <= 1.0:
        raise SystemExit(f"--small-objects {args.small_objects}: must be in 0..1")
    kwargs = {"seed": args.seed, "size": tuple(args.size), "workers": args.workers,
              "small_object_p": args.small_objects}
    if args.images is not None:
        kwargs["num_images"] = args.images
    start = time.perf_counter()
    meta = make(args.root, **kwargs)
    elapsed = time.perf_counter() - start
    for split, counts in eligible_counts(meta).items():
        log.info("%s: %d images; eligible images per class min %d, max %d",
                 split, len(meta["images"][split]), min(counts.values()), max(counts.values()))
    log.info("%s toy dataset written to %s in %.1f s", args.layout, args.root, elapsed)


if __name__ == "__main__":
    main()
