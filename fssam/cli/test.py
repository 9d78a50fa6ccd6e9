"""Test a model on the evaluation episodes: Hydra over ``fssam/configs/test.yaml``; the work
is ``fssam.engine.tester.run_test`` (results.json in the run folder).

    python -m fssam.cli.test dataset=pascal split=0 shot=1 sam2=small
    torchrun --nproc_per_node=4 -m fssam.cli.test dataset=coco split=2 shot=5 sam2=large
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fssam.engine.tester import run_test


@hydra.main(config_path="pkg://fssam.configs", config_name="test", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_test(cfg)


if __name__ == "__main__":
    main()
