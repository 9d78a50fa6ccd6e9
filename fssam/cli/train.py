"""Train a few-shot segmenter, or a base learner (HMNet's first stage): Hydra over
``fssam/configs/train.yaml``; the setup is ``fssam.engine.training.train``.

    python -m fssam.cli.train dataset=pascal split=0 shot=1 experiment=pascal_fssam
    torchrun --nproc_per_node=4 -m fssam.cli.train dataset=coco split=2 shot=5

Exit status: 0 when training ended, ``EXIT_PREEMPTED`` (75) when it stopped on SIGTERM or
SIGUSR1 after writing last.pt (the same command resumes), 1 on an error.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from fssam.engine.preemption import exit_status
from fssam.engine.training import train


@hydra.main(config_path="pkg://fssam.configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sys.exit(exit_status(train(cfg)))


if __name__ == "__main__":
    main()
