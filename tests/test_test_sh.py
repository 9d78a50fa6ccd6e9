"""test.sh: argument checks and the torchrun command it runs (a fake torchrun echoes it)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from fssam.data import benchmarks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_path(tmp_path: Path) -> str:
    fake = tmp_path / "bin" / "torchrun"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "torchrun $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return f"{fake.parent}{os.pathsep}{os.environ['PATH']}"


def run(args: list[str], path: str, ngpus: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    env.pop("NGPUS", None)
    if ngpus is not None:
        env["NGPUS"] = ngpus
    return subprocess.run(
        ["sh", str(REPO / "test.sh"), *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pascal", "0", "1", "FSSAM", "small"], "dataset=pascal split=0 shot=1 sam2=small"),
        (["coco", "3", "5", "FSSAM", "base"], "dataset=coco split=3 shot=5 sam2=base_plus"),
        (["pascal", "2", "5", "FSSAM", "large"], "dataset=pascal split=2 shot=5 sam2=large"),
        (["pascal", "1", "1", "HMNet", "resnet50"],
         "dataset=pascal split=1 shot=1 experiment=pascal_hmnet model.backbone=resnet50"),
        (["coco", "0", "5", "HMNet", "vgg"],
         "dataset=coco split=0 shot=5 experiment=coco_hmnet model.backbone=vgg"),
        (["lvis", "9", "5", "FSSAM", "small"],
         "dataset=lvis split=9 shot=5 sam2=small experiment=lvis_fssam"),
    ],
)
def test_valid_arguments_reach_torchrun(fake_path: str, args: list[str], expected: str) -> None:
    result = run(args, fake_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"torchrun --standalone --nproc_per_node=1 {REPO}/test.py {expected}"
    )


def test_overrides_and_gpu_count_pass_through(fake_path: str) -> None:
    result = run(["coco", "1", "5", "FSSAM", "small", "seeds=[321,123]", "vis=10"], fake_path, "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:3] == ["--standalone", "--nproc_per_node=4"]
    assert result.stdout.split()[-2:] == ["seeds=[321,123]", "vis=10"]


@pytest.mark.parametrize(
    ("args", "ngpus", "message"),
    [
        (["pascal", "0", "1", "FSSAM"], None, "at least 5 arguments"),
        (["voc", "0", "1", "FSSAM", "small"], None, "unknown dataset 'voc'"),
        (["pascal", "4", "1", "FSSAM", "small"], None, "split must be 0..3 for pascal"),
        (["lvis", "10", "1", "FSSAM", "small"], None, "split must be 0..9 for lvis, got '10'"),
        (["lvis", "0", "1", "HMNet", "vgg"], None, "HMNet runs on pascal and coco only"),
        (["pascal", "0", "0", "FSSAM", "small"], None, "shot must be"),
        (["pascal", "0", "x", "FSSAM", "small"], None, "shot must be"),
        (["pascal", "0", "1", "HMNet", "small"], None, "HMNet backbone must be resnet50 or vgg"),
        (["pascal", "0", "1", "BAM", "small"], None, "model must be FSSAM or HMNet"),
        (["pascal", "0", "1", "FSSAM", "tiny"], None, "small, base or large"),
        (["pascal", "0", "1", "FSSAM", "small"], "0", "NGPUS"),
    ],
)
def test_bad_arguments_print_usage(
    fake_path: str, args: list[str], ngpus: str | None, message: str
) -> None:
    result = run(args, fake_path, ngpus)
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage: sh test.sh" in result.stderr
    assert "torchrun" not in result.stdout


@pytest.mark.parametrize("name", benchmarks.NAMES)
def test_every_benchmark_is_accepted_with_its_folds(fake_path: str, name: str) -> None:
    bench = benchmarks.get(name)
    split = ["0"] if bench.num_folds > 1 else []
    result = run([name, *split, "1", "FSSAM", "small"], fake_path)
    assert result.returncode == 0, result.stderr
    assert f"dataset={name} split=0 shot=1 sam2=small" in result.stdout
    train = subprocess.run(["sh", str(REPO / "train.sh"), "1", "29500", name, *split, "1",
                            "FSSAM", "small"], check=False, env={**os.environ, "PATH": fake_path},
                           capture_output=True, text=True, timeout=30)
    if bench.only_test:
        assert train.returncode == 2 and "test-only benchmark" in train.stderr
        assert "experiment=crossdomain_test" in result.stdout
        return
    assert train.returncode == 0, train.stderr
    assert f"dataset={name} split=0" in train.stdout
    if bench.num_folds > 1:
        bad = run([name, str(bench.num_folds), "1", "FSSAM", "small"], fake_path)
        assert bad.returncode == 2 and "split must be" in bad.stderr
