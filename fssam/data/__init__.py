"""Datasets, folds, episodes and transforms of the few-shot protocol."""
