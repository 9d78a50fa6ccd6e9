"""FSSAM: few-shot semantic segmentation with SAM 2."""

__version__ = "0.1.0"
