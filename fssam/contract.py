"""The contract between the engine and the methods.

A method (``fssam.models.<method>``) builds a model that is a ``FewShotSegmenter``; the
engine (training, evaluation, caches) only calls what this module names, and a method only
uses what this module defines: neither imports the other. A third method is one new folder
under ``fssam/models`` and one config file.

- ``FewShotSegmenter``: forward, loss, foreground rule, trainable state.
- ``FrozenEncoders`` (optional): per-image encoders whose outputs evaluation may cache;
  ``Features`` and ``Memo`` are what the engine hands ``forward`` then.
- ``PriorCaching`` (optional): the settings an episode's priors depend on.
- ``PromptedSupports`` (optional): support masks made from clicks or scribbles.
- Episode image identities: the names of the model inputs of a batch.
- ``ScheduledOptimizer``: what a method's training recipe returns.
- ``IGNORE_LABEL``: the label value of pixels that are not scored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor
from torch.optim import Optimizer

IGNORE_LABEL = 255
"""Label value of pixels left out of every loss and metric (VOC's object borders, COCO's
crowds, padding)."""

T = TypeVar("T")


# -- the model --------------------------------------------------------------------------------

@runtime_checkable
class FewShotSegmenter(Protocol):
    """What every method's model offers the engine.

    A batch is a dict: ``query_img`` [b,3,H,W] and ``support_imgs`` [b,K,3,H,W] (float RGB
    0..255, resized to the model's input side), ``support_masks`` [b,K,H,W] and, in
    training, ``query_mask`` [b,H,W] (0, 1, ``IGNORE_LABEL``), ``class_id`` [b]; training
    items also carry ``base_class_index`` [b], evaluation items ``query_id`` and
    ``support_ids`` (``episode_image_ids``).
    """

    def __call__(self, batch: Mapping[str, Any], **reuse: Any) -> dict[str, Tensor]:
        """``{"logits": [b,H,W], ...}``; ``reuse`` holds ``features`` and ``memo`` when the
        model implements ``FrozenEncoders``."""

    def loss(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": scalar, ...}`` of a forward's output against the batch."""

    def foreground(self, logits: Tensor) -> Tensor:
        """Boolean foreground of logits upsampled to a label's size (``sigmoid_foreground``,
        ``positive_foreground``)."""

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The trained parameters and buffers only (what a checkpoint of ours holds)."""

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Strictly load ``trainable_state_dict()``'s keys; errors name every bad key."""


@runtime_checkable
class FrozenEncoders(Protocol):
    """Optional: frozen per-image encoders whose outputs evaluation may reuse.

    ``frozen_encoders()`` maps each encoder's name to a fingerprint of everything its output
    depends on (``fssam.utils.fingerprint``). ``encode_images(name, images)`` runs encoder
    ``name`` on images (n,3,H,W): named tensors with leading dimension n, row i from image i
    alone. ``forward(batch, features=..., memo=...)`` then takes ``features.get(name)`` for
    the images of ``episode_images(batch)`` instead of encoding them, and may keep per-item
    results that depend on trained weights in ``memo`` (``memo.compute``), computed one item
    at a time whether the memo stores them or not.
    """

    def frozen_encoders(self) -> dict[str, str]: ...

    def encode_images(self, name: str, images: Tensor) -> dict[str, Tensor]: ...


@runtime_checkable
class PriorCaching(Protocol):
    """Optional: a model whose ``forward`` output holds ``priors`` [b,2,H,W] that depend only
    on the episode and on ``prior_cache_settings()`` (the engine's prior cache keys them so)
    and that it takes back from ``batch["priors"]``."""

    def prior_cache_settings(self) -> dict[str, Any]: ...


@runtime_checkable
class PromptedSupports(Protocol):
    """Optional: a model that turns a batch's support prompts into support masks.

    ``support_masks_from_prompts(batch, features=...)`` reads the prompt tensors of
    ``fssam.data.support_prompts`` (clicks with their labels, or scribbles) from the batch and
    returns the support masks [b,K,H,W] in {0, 1} that ``forward`` then takes as
    ``support_masks``; ``features`` as in ``FrozenEncoders``."""

    def support_masks_from_prompts(self, batch: Mapping[str, Any], *,
                                   features: Features | None = None) -> Tensor: ...


class Features(Protocol):
    """What ``forward`` receives as ``features``: the frozen encoders' outputs of a batch."""

    def get(self, name: str) -> dict[str, Tensor]: ...


class Memo(Protocol):
    """What ``forward`` receives as ``memo``: per-item results reused within a pass."""

    def compute(self, key: Hashable | None, fn: Callable[[], T]) -> T: ...


def supports_feature_cache(model: torch.nn.Module) -> bool:
    """Whether ``model`` implements ``FrozenEncoders``."""
    return isinstance(model, FrozenEncoders)


def encoded(model: FrozenEncoders, batch: Mapping[str, Any], features: Features | None,
            name: str) -> dict[str, Tensor]:
    """Encoder ``name``'s outputs for ``episode_images(batch)``: the engine's ``features``
    when given, else ``model.encode_images`` on the batch's images."""
    if features is not None:
        return features.get(name)
    return model.encode_images(name, episode_images(batch))


# -- foreground rules -------------------------------------------------------------------------

def sigmoid_foreground(logits: Tensor) -> Tensor:
    """Foreground where ``sigmoid(logits) >= 0.5`` (FSSAM's rule)."""
    return logits.sigmoid() >= 0.5


def positive_foreground(logits: Tensor) -> Tensor:
    """Foreground where ``logits > 0`` strictly: with ``logits = fg - bg`` this is the
    argmax of two channels with ties to the background (HMNet's rule)."""
    return logits > 0


# -- episode image identities -----------------------------------------------------------------

def image_identity(path: str, transform: str) -> str:
    """Name of the model input made from the image file ``path`` by ``transform``.

    The file's identity (absolute path, size, modification time in ns) and the
    (deterministic) transform's description: a file replaced or edited in place gets
    another name.
    """
    stat = os.stat(path)
    return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{transform}"


def episode_images(batch: Mapping[str, Any]) -> Tensor:
    """The n = b(1+K) images of a batch as (n, 3, H, W): the b queries, then the supports
    episode by episode (episode 0's K supports first)."""
    return torch.cat([batch["query_img"], batch["support_imgs"].flatten(0, 1)]).float()


def episode_image_ids(batch: Mapping[str, Any]) -> list[str | None]:
    """Names of the ``episode_images`` in the same order; None where a batch has none
    (training items, user images)."""
    b, shots = batch["support_imgs"].shape[:2]
    queries = batch.get("query_id") or [None] * b
    supports = batch.get("support_ids") or [[None] * shots] * b
    return list(queries) + [name for episode in supports for name in episode]


# -- training recipes -------------------------------------------------------------------------

LRFactor = Callable[[int, int], float]
"""``factor(done, total)``: the learning rate of the next step over the base rate."""


def poly_factor(power: float, *, one_based: bool = False) -> LRFactor:
    """``(1 - i / total) ** power`` with ``i`` the finished steps, or the step being taken
    when ``one_based`` (``i = done + 1``, set before the step); never below 0."""
    offset = 1 if one_based else 0

    def factor(done: int, total: int) -> float:
        return max(0.0, 1.0 - (done + offset) / total) ** power

    return factor


def constant_factor(done: int, total: int) -> float:
    """A constant learning rate."""
    return 1.0


@dataclass
class ScheduledOptimizer:
    """``optimizer`` named ``name`` (its checkpoint key) and its schedule ``factor``.

    A method's recipe (``model.optim._target_``, called with the model and the per-process
    ``batch_size``) returns a list of them; the trainer sets every rate before each step
    (``initial_lr * factor(done, total)``, ``done`` the steps already taken) and steps them
    all, never asking which method it trains.
    """

    name: str
    optimizer: Optimizer
    factor: LRFactor

    def __post_init__(self) -> None:
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def set_lr(self, done: int, total: int) -> float:
        """Set every group's rate for the next step; returns the first group's."""
        factor = self.factor(done, total)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]
