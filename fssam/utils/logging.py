"""Logging for multi-process runs: rank-0 console/file logs, JSON-lines metrics, run records."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter

from fssam.utils.io import WriteError

METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PACKAGES = ("torch", "torchvision", "sam2", "timm", "hydra-core", "numpy", "opencv-python-headless")


def setup_logging(rank: int = 0, log_file: str | os.PathLike | None = None,
                  level: int = logging.INFO) -> None:
    """Rank 0 logs ``level`` to stderr (and ``log_file``); other ranks only warnings.

    Replaces the handlers of an earlier call; other handlers are left alone.
    """
    root = logging.getLogger()
    teardown_logging()
    root.setLevel(level if rank == 0 else logging.WARNING)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if rank == 0 and log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    prefix = "" if rank == 0 else f"[rank {rank}] "
    for handler in handlers:
        handler.setFormatter(logging.Formatter(prefix + FORMAT, "%Y-%m-%d %H:%M:%S"))
        handler.fssam_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def teardown_logging() -> None:
    """Remove and close the handlers installed by ``setup_logging``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "fssam_handler", False):
            root.removeHandler(handler)
            handler.close()


def _json_value(value: Any) -> Any:
    """JSON-safe value: tensors to numbers, non-finite floats to strings, keys to str."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


class JsonlWriter:
    """Appends one JSON object per line to ``path`` and flushes after each record."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: Mapping[str, Any]) -> None:
        try:
            self._file.write(json.dumps(_json_value(record)) + "\n")
            self._file.flush()
        except OSError as err:  # a full disk: name the file (Python's error does not)
            raise WriteError(err.errno, f"cannot append to {self.path}: {err.strerror}") from err

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as err:  # the record that could not be written is reported already
            logging.getLogger(__name__).warning("closing %s: %s", self.path, err)


def truncate_jsonl(path: str | os.PathLike, max_iteration: int) -> None:
    """Drop records with ``iteration > max_iteration`` (left by a run that was resumed)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("iteration", 0) <= max_iteration]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class RunRecords:
    """A run's ``metrics.jsonl`` and TensorBoard scalars (``tb/``); inert when disabled.

    Records after ``start_iteration`` (left by an interrupted run that is now resumed)
    are dropped from both.
    """

    def __init__(self, run_dir: str | os.PathLike, *, start_iteration: int = 0,
                 enabled: bool = True) -> None:
        self.metrics: JsonlWriter | None = None
        self.writer: SummaryWriter | None = None
        if enabled:
            run_dir = Path(run_dir)
            truncate_jsonl(run_dir / METRICS, start_iteration)
            self.metrics = JsonlWriter(run_dir / METRICS)
            self.writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=start_iteration + 1)

    def write(self, record: Mapping[str, Any], scalars: Mapping[str, float]) -> None:
        """Append ``record`` (which holds ``iteration``) and log ``scalars`` at that step."""
        if self.metrics is not None:
            self.metrics.write(record)
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, record["iteration"])

    def close(self) -> None:
        for handle in (self.metrics, self.writer):
            if handle is not None:
                handle.close()
        self.metrics = self.writer = None


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def git_description() -> str:
    """Commit hash of the code and whether the working tree has changes."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = "unknown" if status == "unknown" else ("yes" if status else "no")
    return f"commit: {commit}\nuncommitted changes: {dirty}\n"


def environment_description(world_size: int) -> str:
    """Python, platform, library versions, devices and the command line."""
    group = dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"
    lines = [f"python: {sys.version.split()[0]}", f"platform: {platform.platform()}",
             f"command: {' '.join(sys.argv)}", f"processes: {world_size}",
             f"process group: {group}"]
    for name in PACKAGES:
        try:
            lines.append(f"{name}: {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name}: not installed")
    if torch.cuda.is_available():
        lines.append(f"cuda: {torch.version.cuda}, cudnn: {torch.backends.cudnn.version()}")
        lines += [f"gpu {i}: {torch.cuda.get_device_name(i)}"
                  for i in range(torch.cuda.device_count())]
    else:
        lines.append("cuda: not available")
    return "\n".join(lines) + "\n"


def write_run_records(run_dir: str | os.PathLike, config_yaml: str, world_size: int) -> None:
    """``config.yaml`` (resolved), ``git.txt`` and ``env.txt`` in the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml, encoding="utf-8")
    (run_dir / "git.txt").write_text(git_description(), encoding="utf-8")
    (run_dir / "env.txt").write_text(environment_description(world_size), encoding="utf-8")
