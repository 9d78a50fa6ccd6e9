"""Datasets, folds, episodes and transforms of the few-shot protocol."""

from fssam.data.episodic import build_dataset, collate_episodes

__all__ = ["build_dataset", "collate_episodes"]
