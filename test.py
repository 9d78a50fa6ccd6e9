"""Test a model on the evaluation episodes: the release protocol's row and our multi-seed
row; writes results.json in the run folder.

    python test.py dataset=pascal split=0 shot=1 sam2=small
    torchrun --nproc_per_node=4 test.py dataset=coco split=2 shot=5 sam2=large
    sh test.sh coco 2 5 FSSAM large

See fssam/configs/test.yaml for every option (checkpoint, checkpoint_format, protocols,
seeds, prior cache, overlays). The code is ``fssam.cli.test`` and ``fssam.engine.tester``.
"""

from fssam.cli.test import main

if __name__ == "__main__":
    main()
