"""Write COCO-20i class-index labels (annotations/{train2014,val2014}/*.png) from COCO's JSON.

Expects <root>/annotations/instances_train2014.json and instances_val2014.json (from
annotations_trainval2014.zip); see fssam.tools.coco_convert for the overlap rule.
"""

from __future__ import annotations

import argparse
import logging

from fssam.tools.coco_convert import SUBSETS, convert_coco


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True,
                        help="COCO root holding train2014/ val2014/ annotations/")
    parser.add_argument("--ann-dir", default=None,
                        help="folder of the instances_*.json files (default: <root>/annotations)")
    parser.add_argument("--subsets", nargs="+", default=list(SUBSETS), choices=SUBSETS)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convert_coco(args.root, subsets=args.subsets, ann_dir=args.ann_dir, progress=not args.no_progress)


if __name__ == "__main__":
    main()
