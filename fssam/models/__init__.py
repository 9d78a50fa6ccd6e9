"""The FSSAM model: pseudo prompts, memory refinement, calibrated attention on SAM 2."""
