"""Process-group set-up for runs launched by torchrun (or as one plain process)."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class DistInfo:
    """This process: its rank among ``world_size``, its rank on the node and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but CUDA is not available")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto", timeout_min: int = 30,
                     timeout_s: float | None = None) -> DistInfo:
    """Join the process group from torchrun's environment (NCCL on CUDA, gloo on CPU).

    Without torchrun's variables this is one process of rank 0. ``device``: ``auto``
    (CUDA when available), ``cuda`` or ``cpu``. A collective that waits longer than the
    timeout (``timeout_s`` seconds when given, else ``timeout_min`` minutes) fails: gloo
    raises in the waiting rank, NCCL's watchdog ends the process.
    """
    if not _launched_by_torchrun():
        return DistInfo(0, 1, 0, _pick_device(device, 0))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = _pick_device(device, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        timeout = datetime.timedelta(minutes=timeout_min) if timeout_s is None else \
            datetime.timedelta(seconds=timeout_s)
        store = _attempt_store()
        if store is not None:
            kwargs.update(store=store, rank=rank, world_size=world)
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
        log.info("rank %d of %d joined the %s process group on %s", rank, world, backend, dev)
    return DistInfo(rank, world, local_rank, dev)


def _attempt_store() -> dist.Store | None:
    """Under torchrun, the process group's keys go to torchrun's store below a prefix of
    this attempt (``TORCHELASTIC_RESTART_COUNT``): that store outlives a restart of the
    group, and a restarted group that reads the addresses its predecessor left there fails
    to connect (pytorch/pytorch#135712, #167288). None elsewhere (``env://`` as usual)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                           is_master=False, timeout=datetime.timedelta(minutes=30))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"fssam/attempt{attempt}/process_group", client)


def is_dist() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks, in place (unchanged in a single process)."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_sum_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``tensor`` summed over ranks, through the backend's device (NCCL
    reduces CUDA tensors only)."""
    if not is_dist():
        return tensor.clone()
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    reduced = tensor.to(device, copy=True)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group, if any."""
    if is_dist():
        dist.destroy_process_group()
