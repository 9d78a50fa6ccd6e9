"""HMNet (Hybrid Mamba for Few-Shot Segmentation, NeurIPS 2024) on the shared engine."""
