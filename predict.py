#!/usr/bin/env python
"""Segment your own images with a trained FSSAM model (see --help; logic in fssam/predict.py)."""

from fssam.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
