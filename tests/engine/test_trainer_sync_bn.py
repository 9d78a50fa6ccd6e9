"""Under DDP on CUDA the trainer turns BatchNorm into SyncBatchNorm in place (the optimisers'
parameters stay the same objects); on CPU (gloo cannot run SyncBatchNorm) it does not.
DDP itself is replaced by a recorder: the conversion needs no GPU."""

from __future__ import annotations

import torch
from torch import nn

from fssam.engine import trainer as trainer_module
from fssam.engine.trainer import Trainer
from fssam.models.hmnet import HMNet, PSPNet
from fssam.models.hmnet.model import TINY_SIZES
from fssam.utils.dist import DistInfo


def wrap(model: nn.Module, device: str, monkeypatch) -> tuple[nn.Module, dict]:
    monkeypatch.setattr(trainer_module, "DistributedDataParallel",
                        lambda module, **kwargs: (module, kwargs))
    return Trainer._wrap(model, DistInfo(0, 2, 0, torch.device(device)))


def batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_cuda_ddp_trains_synchronised_batchnorm_on_the_same_parameters(monkeypatch):
    model = PSPNet(backbone="vgg", num_base_classes=3, backbone_width=4, head_dim=8)
    params = [id(p) for p in model.parameters()]
    wrapped, kwargs = wrap(model, "cuda:0", monkeypatch)
    assert kwargs == {"device_ids": [0], "static_graph": True}
    assert batchnorms(wrapped) and all(isinstance(m, nn.SyncBatchNorm)
                                       for m in batchnorms(wrapped))
    assert [id(p) for p in wrapped.parameters()] == params


def test_hmnet_keeps_its_synchronised_batchnorm_frozen(monkeypatch):
    wrapped, _ = wrap(HMNet(**TINY_SIZES), "cuda:0", monkeypatch)
    wrapped.train()
    assert all(isinstance(m, nn.SyncBatchNorm) and not m.training for m in batchnorms(wrapped))
    assert wrapped.base_learner[1].training


def test_cpu_ddp_keeps_plain_batchnorm(monkeypatch):
    wrapped, kwargs = wrap(PSPNet(backbone="vgg", num_base_classes=3, backbone_width=4,
                                  head_dim=8), "cpu", monkeypatch)
    assert kwargs == {"device_ids": None, "static_graph": True}
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in wrapped.modules())
