"""``scripts/check_data.py``: a dataset's layout, labels and per-fold lists against the
authors' counts."""
