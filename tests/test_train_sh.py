"""train.sh: argument checks and the torchrun command it runs (a fake torchrun echoes it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SINGLE_NODE = "--nnodes=1 --node_rank=0 --master_addr=127.0.0.1"
FAULT_FLAGS = ("--max-restarts=3 --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 "
               "--shutdown-timeout=300")


@pytest.fixture
def fake_path(tmp_path: Path) -> str:
    """PATH whose torchrun prints its arguments, one per line."""
    fake = tmp_path / "bin" / "torchrun"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    return f"{fake.parent}{os.pathsep}{os.environ['PATH']}"


def run(args: list[str], path: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MAX_RESTARTS", "STOP_TIMEOUT")}
    env.update(PATH=path, **env_vars)
    return subprocess.run(["sh", str(REPO / "train.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("args, expected", [
    (["4", "29500", "pascal", "0", "1", "FSSAM", "small"],
     "dataset=pascal split=0 shot=1 sam2=small experiment=pascal_fssam"),
    (["4", "29501", "pascal", "3", "5", "FSSAM", "base"],
     "dataset=pascal split=3 shot=5 sam2=base_plus experiment=pascal_fssam"),
    (["1", "12345", "coco", "2", "5", "FSSAM", "large"],
     "dataset=coco split=2 shot=5 sam2=large experiment=coco_fssam"),
    (["4", "29500", "pascal", "1", "base", "HMNet", "resnet50"],
     "dataset=pascal split=1 model=pspnet model.backbone=resnet50 experiment=pascal_base"),
    (["8", "29500", "coco", "3", "base", "HMNet", "vgg"],
     "dataset=coco split=3 model=pspnet model.backbone=vgg experiment=coco_base"),
    (["4", "29500", "pascal", "0", "5", "HMNet", "vgg"],
     "dataset=pascal split=0 shot=5 model=hmnet model.backbone=vgg experiment=pascal_hmnet"),
    (["8", "29500", "coco", "2", "1", "HMNet", "resnet50"],
     "dataset=coco split=2 shot=1 model=hmnet model.backbone=resnet50 experiment=coco_hmnet"),
    (["2", "29500", "lvis", "7", "1", "FSSAM", "small"],
     "dataset=lvis split=7 shot=1 sam2=small experiment=lvis_fssam"),
    (["4", "29500", "pascal", "4", "1", "FSSAM", "small"],  # cross-domain: every class
     "dataset=pascal split=4 shot=1 sam2=small experiment=pascal_crossdomain"),
])
def test_valid_arguments_reach_torchrun(fake_path, args, expected):
    result = run(args, fake_path)
    assert result.returncode == 0, result.stderr
    gpus, port = args[:2]
    assert result.stdout.split("\n")[:-1] == [
        *SINGLE_NODE.split(), f"--master_port={port}", f"--nproc_per_node={gpus}",
        *FAULT_FLAGS.split(), f"{REPO}/train.py", *expected.split()]


def test_overrides_pass_through_unchanged(fake_path):
    result = run(["2", "29500", "coco", "1", "1", "FSSAM", "small", "trainer.num_workers=4",
                  "dataset.root=/data/my coco"], fake_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-3:-1] == ["trainer.num_workers=4", "dataset.root=/data/my coco"]


def test_multi_node_from_environment(fake_path):
    result = run(["8", "29500", "coco", "0", "1", "FSSAM", "small"], fake_path,
                 NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:5] == ["--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1",
                                            "--master_port=29500", "--nproc_per_node=8"]


def test_fault_settings_from_environment(fake_path):
    result = run(["2", "29500", "coco", "1", "1", "FSSAM", "small"], fake_path,
                 MAX_RESTARTS="0", STOP_TIMEOUT="90")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert "--max-restarts=0" in lines and "--shutdown-timeout=90" in lines


def test_run_that_stopped_on_a_signal_exits_75(tmp_path):
    """A torchrun whose run confirmed its checkpoint in $FSSAM_STOP_FILE (and then exits 1,
    as torchrun does after a forwarded signal): train.sh exits 75 and removes the file."""
    fake = tmp_path / "bin" / "torchrun"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "preempted 7 SIGTERM" > "$FSSAM_STOP_FILE"\n'
                    'echo "$FSSAM_STOP_FILE"\nexit 1\n')
    fake.chmod(0o755)
    result = run(["2", "29500", "coco", "1", "1", "FSSAM", "small"],
                 f"{fake.parent}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))
    assert result.returncode == 75 and "preempted 7 SIGTERM" in result.stderr
    assert not Path(result.stdout.strip()).exists()


@pytest.mark.parametrize("args, env, message", [
    (["4", "29500", "pascal", "0", "1", "FSSAM"], {}, "expected at least 7 arguments, got 6"),
    (["0", "29500", "pascal", "0", "1", "FSSAM", "small"], {}, "GPUs must be a positive integer, got '0'"),
    (["x", "29500", "pascal", "0", "1", "FSSAM", "small"], {}, "GPUs must be a positive integer, got 'x'"),
    (["4", "port", "pascal", "0", "1", "FSSAM", "small"], {}, "port must be a positive integer, got 'port'"),
    (["4", "70000", "pascal", "0", "1", "FSSAM", "small"], {}, "port must be at most 65535"),
    (["4", "29500", "voc", "0", "1", "FSSAM", "small"], {}, "unknown dataset 'voc'"),
    (["4", "29500", "coco", "4", "1", "FSSAM", "small"], {}, "split must be 0, 1, 2 or 3 (4 for "
     "cross-domain training on pascal), got '4'"),
    (["4", "29500", "lvis", "10", "1", "FSSAM", "small"], {}, "split must be 0..9 for lvis, got "
     "'10'"),
    (["4", "29500", "lvis", "0", "1", "HMNet", "vgg"], {}, "HMNet runs on pascal and coco only"),
    (["4", "29500", "pascal", "4", "1", "HMNet", "vgg"], {}, "split 4 (every PASCAL class) is "
     "for FSSAM only"),
    (["4", "29500", "pascal", "0", "0", "FSSAM", "small"], {}, "shot must be a positive integer, got '0'"),
    (["4", "29500", "pascal", "0", "-1", "FSSAM", "small"], {}, "shot must be a positive integer, got '-1'"),
    (["4", "29500", "pascal", "0", "1", "HSNet", "small"], {}, "model must be FSSAM or HMNet, got 'HSNet'"),
    (["4", "29500", "pascal", "0", "1", "FSSAM", "huge"], {}, "SAM 2 size must be small, base or large"),
    (["4", "29500", "pascal", "0", "base", "FSSAM", "small"], {}, "shot must be a positive integer, got 'base'"),
    (["4", "29500", "pascal", "0", "1", "HMNet", "small"], {}, "backbone must be resnet50 or vgg, got 'small'"),
    (["4", "29500", "pascal", "0", "Base", "HMNet", "vgg"], {}, "shot must be a positive integer, got 'Base'"),
    (["4", "29500", "pascal", "0", "1", "FSSAM", "small"], {"NNODES": "0"}, "NNODES must be a positive integer"),
    (["4", "29500", "pascal", "0", "1", "FSSAM", "small"], {"NNODES": "2", "NODE_RANK": "2"},
     "NODE_RANK must be below NNODES=2, got '2'"),
    (["4", "29500", "pascal", "0", "1", "FSSAM", "small"], {"MAX_RESTARTS": "-1"},
     "MAX_RESTARTS must be an integer >= 0, got '-1'"),
    (["4", "29500", "pascal", "0", "1", "FSSAM", "small"], {"STOP_TIMEOUT": "0"},
     "STOP_TIMEOUT must be a positive integer, got '0'"),
])
def test_bad_arguments_exit_2_with_usage(fake_path, args, env, message):
    result = run(args, fake_path, **env)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and "usage: sh train.sh" in result.stderr
