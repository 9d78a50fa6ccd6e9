"""Test FSSAM on N episodes for each of several seeds; writes results.json in the run folder.

    python test.py dataset=pascal split=0 shot=1 sam2=small
    torchrun --nproc_per_node=4 test.py dataset=coco split=2 shot=5 sam2=large
    sh test.sh coco 2 5 FSSAM large

See configs/test.yaml for every option (checkpoint, checkpoint_format, seeds, prior cache,
overlays).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fssam.engine.tester import run_test


@hydra.main(config_path="configs", config_name="test", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_test(cfg)


if __name__ == "__main__":
    main()
