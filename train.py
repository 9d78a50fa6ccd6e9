"""Train a few-shot segmenter on one fold of PASCAL-5i / COCO-20i (or the synthetic dataset),
or a base learner on the fold's base classes (HMNet's first stage).

    python train.py dataset=coco split=2 shot=5 sam2=large
    torchrun --nproc_per_node=4 train.py dataset=pascal split=0 shot=1 experiment=pascal_fssam
    sh train.sh 4 29500 pascal 0 1 FSSAM small
    sh train.sh 4 29500 pascal 0 base HMNet resnet50

See fssam/configs/train.yaml and its groups for every option. The run folder
(exp/<dataset>/<model>/split<i>/<K>shot/<variant>/) receives config.yaml, git.txt,
env.txt, train.log, metrics.jsonl, tb/, last.pt and best.pt; an existing last.pt there
is resumed. Exit status: 0 when training ended, 75 when it stopped on SIGTERM or SIGUSR1
after writing last.pt (start the same command again to resume), 1 on an error. The code is
``fssam.cli.train`` and ``fssam.engine.training``.
"""

from fssam.cli.train import main

if __name__ == "__main__":
    main()
