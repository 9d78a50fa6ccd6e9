"""Faults of a one-process CPU run: a stop signal at a random step, a full disk or a
read-only folder while saving, a checkpoint of another run. Each costs at most the work
since the last save and never changes the result."""

from __future__ import annotations

import errno
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fssam.engine import checkpoint as ckpt_module
from fssam.engine import training
from fssam.engine.checkpoint import load_checkpoint
from fssam.engine.config import compose_config
from fssam.engine.preemption import EXIT_PREEMPTED, STOP_FILE_ENV, exit_status
from fssam.engine.resume_check import ResumeMismatchError
from fssam.engine.trainer import Trainer
from fssam.tools.toy import make_toy_pascal
from fssam.utils.io import WriteError

from .conftest import records

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "tests" / "fixtures" / "parity"
RUN = "toy/FSSAM_tiny_dino/split0/1shot/micro"
ITERATIONS = 8  # 2 epochs of 4 steps (33 items, 8 per step)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    make_toy_pascal(root, num_images=80, size=(128, 160), workers=1)
    return root


@pytest.fixture(scope="module")
def script():
    """What train.py runs: ``train(cfg)``."""
    return training


def overrides(toy_root: Path, exp_dir: Path, *extra: str, lists: Path | None = None
              ) -> list[str]:
    lists = lists or exp_dir / "lists"
    return ["debug=cpu", f"dataset.root={toy_root}", f"dataset.cache_dir={lists}",
            f"exp_dir={exp_dir}", f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
            f"sam2.checkpoint={PARITY / 'micro_weights.pt'}", "sam2.image_size=64",
            "trainer.batch_size=8", "trainer.epochs=2", "trainer.max_iterations=null",
            "trainer.val_per_epoch=2", "trainer.val_episodes=2", "trainer.num_threads=1",
            "trainer.progress=false", "trainer.val_mid_epoch_delay=0", *extra]


def config(toy_root: Path, exp_dir: Path, *extra: str):
    return compose_config("train", overrides(toy_root, exp_dir, *extra))


@pytest.fixture(scope="module")
def reference(toy_root, tmp_path_factory, script) -> Path:
    exp_dir = tmp_path_factory.mktemp("reference")
    assert script.train(config(toy_root, exp_dir))["stopped"] == "finished"
    return exp_dir


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a / RUN / "last.pt"), load_checkpoint(b / RUN / "last.pt")
    assert first["iteration"] == second["iteration"] == ITERATIONS
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
    assert first["best_miou"] == second["best_miou"]
    for kind in ("train", "val"):
        assert records(a / RUN, kind) == records(b / RUN, kind)


def signal_at(step: int, sig: signal.Signals, monkeypatch) -> None:
    """The process sends itself ``sig`` during step ``step`` (1-based)."""
    original = Trainer.train_step

    def step_then_signal(self, batch):
        if self.state.iteration + 1 == step:
            signal.raise_signal(sig)
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_saves_the_step_and_the_restart_ends_identical(
        toy_root, reference, tmp_path, script, monkeypatch, sig):
    step = random.randint(1, ITERATIONS - 1)
    stop_file = tmp_path / "stopped"
    monkeypatch.setenv(STOP_FILE_ENV, str(stop_file))
    signal_at(step, sig, monkeypatch)
    before = signal.getsignal(sig)
    summary = script.train(config(toy_root, tmp_path))
    monkeypatch.undo()
    assert signal.getsignal(sig) == before  # the handler lived during training only
    assert summary["stopped"] == "preempted" and summary["iteration"] == step, (step, summary)
    assert exit_status(summary) == EXIT_PREEMPTED == 75
    assert load_checkpoint(tmp_path / RUN / "last.pt")["iteration"] == step
    assert stop_file.read_text() == f"preempted {step} {sig.name}\n"
    assert exit_status(script.train(config(toy_root, tmp_path))) == 0
    assert_same_weights(reference, tmp_path)


def fail_save(number: int, code: int, monkeypatch) -> None:
    """The ``number``-th checkpoint write fails half-way with OSError ``code``."""
    calls = []
    real = ckpt_module.atomic_write

    def half_then_fail(path, write):
        calls.append(path)
        if len(calls) != number:
            return real(path, write)

        def broken(handle):
            handle.write(b"partial")
            raise OSError(code, "injected: " + errno.errorcode[code])
        return real(path, broken)

    monkeypatch.setattr(ckpt_module, "atomic_write", half_then_fail)


@pytest.mark.parametrize("code, name", [(errno.ENOSPC, "ENOSPC"), (errno.EROFS, "EROFS")])
def test_a_failed_save_keeps_the_previous_checkpoint_and_names_path_and_cause(
        toy_root, tmp_path, script, monkeypatch, code, name):
    fail_save(3, code, monkeypatch)  # saves: 1 (last), 2 (a validation: best, then last)
    with pytest.raises(WriteError) as caught:
        script.train(config(toy_root, tmp_path, "trainer.save_every=1"))
    run_dir = tmp_path / RUN
    message = str(caught.value)
    assert f"cannot write {run_dir / 'last.pt'}" in message and f"({name})" in message
    assert caught.value.errno == code
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 1
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


TMPFS_RUN = """set -e
mount -t tmpfs -o size={size} tmpfs {mount}
status=0
{python} {train} {args} > {out} 2>&1 || status=$?
echo $status > {status}
cp -r {mount}/. {copy}
"""


def test_a_save_into_a_full_tmpfs_stops_the_run(toy_root, tmp_path, script):
    """A real 10 MB tmpfs (in a user and mount namespace): the micro model's checkpoint
    (6.7 MB) fits once; the temporary file of the second does not."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("no user/mount namespace for a tmpfs here (the injected ENOSPC test runs)")
    mount, copy = tmp_path / "mnt", tmp_path / "copy"
    mount.mkdir()
    copy.mkdir()
    args = overrides(toy_root, mount, "trainer.save_every=1", "trainer.val_per_epoch=0",
                     lists=tmp_path / "lists")
    command = TMPFS_RUN.format(size="10m", mount=mount, python=sys.executable,
                               train=ROOT / "train.py", args=" ".join(f"'{a}'" for a in args),
                               out=tmp_path / "out.txt", status=tmp_path / "status", copy=copy)
    subprocess.run(["unshare", "-rm", "sh", "-c", command], check=True, timeout=300)
    out = (tmp_path / "out.txt").read_text()
    assert (tmp_path / "status").read_text().strip() == "1", out
    assert f"cannot write {mount / RUN / 'last.pt'}: No space left on device (ENOSPC)" in out
    assert load_checkpoint(copy / RUN / "last.pt")["iteration"] == 1


def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(toy_root, tmp_path,
                                                                       script):
    script.train(config(toy_root, tmp_path / "a", "trainer.max_iterations=1",
                        "trainer.val_per_epoch=0"))
    two_shot = tmp_path / "b" / "toy/FSSAM_tiny_dino/split0/2shot/micro"
    two_shot.mkdir(parents=True)
    shutil.copy(tmp_path / "a" / RUN / "last.pt", two_shot / "last.pt")
    with pytest.raises(ResumeMismatchError, match=r"another run's checkpoint \(shot: 1 in the "
                                                  r"checkpoint, 2 now\)"):
        script.train(config(toy_root, tmp_path / "b", "shot=2", "trainer.max_iterations=2",
                            "trainer.val_per_epoch=0"))


def test_a_changed_schedule_needs_leave_and_gets_it(toy_root, tmp_path, script):
    common = ["trainer.max_iterations=1", "trainer.val_per_epoch=0"]
    script.train(config(toy_root, tmp_path, *common))
    with pytest.raises(ResumeMismatchError, match=r"trainer.epochs: 2 in the checkpoint, 3 "
                                                  r"now.*trainer.resume_allow_changes="
                                                  r"\[trainer.epochs\]"):
        script.train(config(toy_root, tmp_path, *common, "trainer.epochs=3"))
    summary = script.train(config(toy_root, tmp_path, "trainer.max_iterations=2",
                                  "trainer.val_per_epoch=0", "trainer.epochs=3",
                                  "trainer.resume_allow_changes=[trainer.epochs]",
                                  "trainer.num_workers=1"))  # bookkeeping: always free
    assert summary["iteration"] == 2
