"""Evaluation reuses what frozen encoders computed, across episodes, passes and seeds.

At evaluation an image is resized deterministically, so the output of a frozen per-image
encoder is a pure function of the image. ``FeatureCache`` keeps those outputs (least
recently used dropped beyond a size budget) and ``PassMemo`` keeps, for one evaluation
pass only, what also depends on trainable weights. The engine never asks which method it
runs; a model takes part by implementing ``fssam.contract.FrozenEncoders`` (encoders are
fingerprinted at the start of every pass; ``encode_images`` runs under the engine's
``no_grad`` and autocast, as the model's own forward does).

Bit-identical results. The key of a cached output is (encoder name, fingerprint, image
name, input shape, autocast dtype, device type); the image name covers the file identity
and the resize (``fssam.contract.image_identity``). A cached value is a copy of
exactly what the encoder returned (same dtype), and every image is encoded alone, with or
without the cache: batched kernels may round differently with the batch's composition (the
micro SAM 2 does on CPU), so encoding misses together would make a cold pass differ from a
warm one. ``BatchFeatures`` stacks the per-image outputs the same way in both cases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from fssam.engine.lru import GB, LRUStore
from fssam.utils.dist import all_reduce_sum_cpu

log = logging.getLogger(__name__)

STORAGES = ("cpu", "device")
T = TypeVar("T")


class FeatureCache:
    """Frozen encoders' outputs by image, kept across evaluation passes.

    ``size_gb``: budget of this process; ``storage``: ``cpu`` (RAM, pinned when the model
    runs on CUDA) or ``device`` (the evaluating device's memory).
    """

    def __init__(self, *, size_gb: float, storage: str = "cpu") -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage {storage!r}: must be one of {', '.join(STORAGES)}")
        if size_gb < 0:
            raise ValueError(f"size_gb must be >= 0, got {size_gb}")
        self.storage = storage
        self.store = LRUStore(int(size_gb * GB))
        self.hits = self.misses = 0
        self._context: tuple[Hashable, ...] = ()
        self._fingerprints: dict[str, str] = {}

    def begin_pass(self, model: nn.Module, device: torch.device,
                   amp_dtype: torch.dtype | None) -> None:
        """Fingerprint the model's encoders (weights may have changed since the last pass)."""
        self._fingerprints = dict(model.frozen_encoders())
        self._context = (str(amp_dtype), device.type)

    def key(self, name: str, image_id: str, shape: Sequence[int]) -> tuple[Hashable, ...]:
        """Cache key of encoder ``name``'s output for one image."""
        if name not in self._fingerprints:
            raise KeyError(f"encoder {name!r} is not among the model's frozen encoders "
                           f"{sorted(self._fingerprints)} (call begin_pass first)")
        return (name, self._fingerprints[name], image_id, tuple(shape), *self._context)

    def get(self, key: Hashable, device: torch.device) -> dict[str, Tensor] | None:
        """A cached output, on ``device``."""
        value = self.store.get(key)
        if value is None:
            return None
        return {k: v.to(device, non_blocking=True) for k, v in value.items()}

    def put(self, key: Hashable, value: Mapping[str, Tensor]) -> None:
        """Keep a copy of ``value`` (evicting the least recently used as needed)."""
        self.store.put(key, {k: self._copy(v) for k, v in value.items()})

    def _copy(self, tensor: Tensor) -> Tensor:
        tensor = tensor.detach()
        if self.storage == "device" or tensor.device.type == "cpu":
            return tensor.clone()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        return host.copy_(tensor)

    def stats(self) -> dict[str, int]:
        """Counters since creation: hits, misses, evictions; entries and bytes now."""
        return {"hits": self.hits, "misses": self.misses, "evictions": self.store.evictions,
                "entries": len(self.store), "bytes": self.store.bytes,
                "budget_bytes": self.store.budget}


class BatchFeatures:
    """Frozen encoders' outputs for the n images of one batch, computed when first asked.

    With a ``cache``, named images are looked up and their misses stored; an image that
    appears several times in the batch is encoded once. Without one, every image is
    encoded (alone, as with the cache).
    """

    def __init__(self, model: nn.Module, images: Tensor, ids: Sequence[str | None],
                 cache: FeatureCache | None) -> None:
        if len(ids) != images.shape[0]:
            raise ValueError(f"{len(ids)} image names for {images.shape[0]} images")
        self.model, self.images, self.ids, self.cache = model, images, list(ids), cache
        self._done: dict[str, dict[str, Tensor]] = {}

    def get(self, name: str) -> dict[str, Tensor]:
        """Encoder ``name``'s outputs, each with leading dimension n."""
        if name not in self._done:
            rows = self._rows(name)
            self._done[name] = {k: torch.cat([row[k] for row in rows]) for k in rows[0]}
        return self._done[name]

    def _rows(self, name: str) -> list[dict[str, Tensor]]:
        cache, device = self.cache, self.images.device
        seen: dict[Hashable, dict[str, Tensor]] = {}
        rows = []
        for i, image_id in enumerate(self.ids):
            image = self.images[i:i + 1]
            if cache is None or image_id is None:
                rows.append(self.model.encode_images(name, image))
                continue
            key = cache.key(name, image_id, image.shape[1:])
            row = seen.get(key)
            if row is None:
                row = cache.get(key, device)
            if row is None:
                row = self.model.encode_images(name, image)
                cache.misses += 1
                cache.put(key, row)
            else:
                cache.hits += 1
            seen[key] = row
            rows.append(row)
        return rows


class PassMemo:
    """Per-item results a model reuses within one evaluation pass (or several passes with
    the same weights, e.g. the seeds of a test), at most ``size_gb``.

    ``bind(model, context)`` at the start of each pass empties the memo when any parameter
    of the model changed (an optimizer step, a load) or the ``context`` (autocast dtype,
    device) did since the last bind, so nothing is reused across a training step.
    ``size_gb=0`` stores nothing.
    """

    def __init__(self, *, size_gb: float) -> None:
        if size_gb < 0:
            raise ValueError(f"size_gb must be >= 0, got {size_gb}")
        self.store = LRUStore(int(size_gb * GB))
        self.hits = self.misses = 0
        self._stamp: tuple | None = None

    @staticmethod
    def _weights_stamp(model: nn.Module) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in model.parameters())

    def bind(self, model: nn.Module, context: Hashable = None) -> None:
        """Start a pass of ``model``: forget everything if its weights or ``context`` changed."""
        stamp = (self._weights_stamp(model), context)
        if self._stamp is not None and stamp != self._stamp and len(self.store):
            log.info("model weights or precision changed: %d memoised results dropped",
                     len(self.store))
            self.store.clear()
        self._stamp = stamp

    def compute(self, key: Hashable | None, fn: Callable[[], T]) -> T:
        """The value memoised under ``key``, else ``fn()`` (kept when ``key`` is not None)."""
        if key is not None:
            value = self.store.get(key)
            if value is not None:
                self.hits += 1
                return value
            self.misses += 1
        value = fn()
        if key is not None:
            self.store.put(key, value)
        return value

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.store.evictions,
                "entries": len(self.store), "bytes": self.store.bytes,
                "budget_bytes": self.store.budget}


def reuse_from_config(settings: Mapping[str, Any]) -> tuple[FeatureCache | None, float]:
    """The encoder cache and the memo budget (GB) of the ``trainer.eval_cache`` settings."""
    if not settings["enabled"]:
        return None, 0.0
    cache = FeatureCache(size_gb=float(settings["size_gb"]), storage=str(settings["storage"]))
    return cache, float(settings["memo_gb"])


def log_reuse(label: str, now: Mapping[str, int], before: Mapping[str, int] | None) -> None:
    """Log one pass's counters (``now - before``; entries and bytes as they are now), summed
    over processes. A collective call under ``torch.distributed``: every rank must make it."""
    before = before or {}
    keys = ("hits", "misses", "evictions", "entries", "bytes", "budget_bytes")
    values = [now[k] - before.get(k, 0) if k in ("hits", "misses", "evictions") else now[k]
              for k in keys]
    summed = all_reduce_sum_cpu(torch.tensor(values, dtype=torch.int64))
    hits, misses, evictions, entries, size, budget = (int(v) for v in summed.tolist())
    rate = 100.0 * hits / (hits + misses) if hits + misses else 0.0
    log.info("%s: %d hits, %d misses (%.1f%% hit rate), %d evictions; %.2f GB in %d entries "
             "(budget %.2f GB)", label, hits, misses, rate, evictions, size / GB, entries,
             budget / GB)

