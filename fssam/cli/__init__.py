"""Entry points: ``train.py``, ``test.py`` and ``predict.py`` at the repository root call
these, and so do ``python -m fssam.cli.train`` / ``python -m fssam.cli.test`` (and the
``fssam-train`` / ``fssam-test`` / ``fssam-predict`` commands) from an installed package."""
