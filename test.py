"""Test FSSAM on N episodes for each of several seeds; writes results.json in the run folder.

    python test.py dataset=pascal split=0 shot=1 sam2=small
    torchrun --nproc_per_node=4 test.py dataset=coco split=2 shot=5 sam2=large
    sh test.sh coco 2 5 FSSAM large

See configs/test.yaml for every option (checkpoint, checkpoint_format, seeds, prior cache,
overlays).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from fssam.engine.tester import build_test_model, evaluate_seeds, format_results, validate_test_config, write_results
from fssam.utils.dist import cleanup, init_distributed
from fssam.utils.logging import setup_logging


@hydra.main(config_path="configs", config_name="test", version_base="1.3")
def main(cfg: DictConfig) -> None:
    validate_test_config(cfg)
    info = init_distributed(cfg.trainer.device)
    try:
        setup_logging(info.rank, Path(cfg.run_dir) / "test.log")
        if cfg.trainer.num_threads is not None:
            torch.set_num_threads(int(cfg.trainer.num_threads))
        results = evaluate_seeds(cfg, build_test_model(cfg), info)
        if info.is_main:
            path = write_results(results, cfg.results_file)
            print(format_results(results))
            print(f"results written to {path}")
    finally:
        cleanup()


if __name__ == "__main__":
    GlobalHydra.instance().clear()  # importing sam2 initialises Hydra's global state
    main()
