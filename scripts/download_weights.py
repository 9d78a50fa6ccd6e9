#!/usr/bin/env python
"""Download the SAM 2 and DINOv2 checkpoints into pretrained/ (see --help and --list)."""

from pathlib import Path

from fssam.tools.weights import main

if __name__ == "__main__":
    raise SystemExit(main(default_dest=Path(__file__).resolve().parents[1] / "pretrained"))
