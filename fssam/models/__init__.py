"""Few-shot segmentation methods, one sub-package each (``fssam``), and shared parts."""
