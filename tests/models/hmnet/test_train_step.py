"""One optimisation step of each stage on tiny models, through the engine's step
(``backward_and_step``) and the models' own losses and recipes: which parameters move,
which statistics stay, which dropout is active."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fssam.engine.optim import backward_and_step
from fssam.models.hmnet import HMNet, PSPNet
from fssam.models.hmnet.model import FROZEN_MODULES, TINY_SIZES
from fssam.models.hmnet.recipe import hmnet_optimizers, pspnet_optimizers

SIDE = 33


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict, model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def test_one_hmnet_step_moves_only_the_meta_learner_with_frozen_bn_and_active_base_dropout():
    torch.manual_seed(0)
    model = HMNet(shot=1, **TINY_SIZES).train()
    g = torch.Generator().manual_seed(1)
    query_mask = (torch.rand(2, SIDE, SIDE, generator=g) > 0.5).long()
    query_mask[:, :3] = 255
    batch = {"query_img": 255 * torch.rand(2, 3, SIDE, SIDE, generator=g),
             "support_imgs": 255 * torch.rand(2, 1, 3, SIDE, SIDE, generator=g),
             "support_masks": (torch.rand(2, 1, SIDE, SIDE, generator=g) > 0.5).long(),
             "query_mask": query_mask, "base_class_index": torch.tensor([2, 9])}
    modes = []
    model.base_learner[1].register_forward_hook(lambda m, i, o: modes.append(m.training))
    before = snapshot(model)
    optimizers = hmnet_optimizers(model)
    for o in optimizers:
        o.set_lr(0, 10)
    out = model(batch)
    losses = model.loss(out, batch)
    torch.testing.assert_close(losses["loss"], losses["main"] + losses["aux"])
    backward_and_step(losses["loss"], optimizers)

    assert modes == [True]  # Q9: the frozen base head's Dropout2d ran in training mode
    last = f"mamba.layers.0.blocks.{len(model.mamba.blocks) - 1}."
    unused = (last + "self_attention.out_proj_s.", last + "mlp_s.")  # Q8: no gradient
    frozen = tuple(f"{m}." for m in FROZEN_MODULES)
    expected = {n for n, p in model.named_parameters()
                if not n.startswith(frozen) and not n.startswith(unused)}
    moved = changed(before, model)
    assert moved == expected
    # frozen BatchNorm statistics (buffers) did not move either, and there are some to check
    statistics = {k for k in before if "running_" in k or "num_batches" in k}
    assert statistics and not statistics & moved


def test_one_base_learner_step_trains_everything_and_its_batchnorm():
    torch.manual_seed(0)
    model = PSPNet(backbone="resnet50", num_base_classes=4, backbone_width=4, head_dim=8).train()
    g = torch.Generator().manual_seed(2)
    label = torch.randint(0, 5, (2, SIDE, SIDE), generator=g)
    label[:, -4:] = 255
    batch = {"image": 255 * torch.rand(2, 3, SIDE, SIDE, generator=g), "label": label}
    assert model.cls[3].training and all(
        m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = snapshot(model)
    optimizers = pspnet_optimizers(model)
    optimizers[0].set_lr(0, 10)
    out = model(batch)
    assert out["logits"].shape == (2, 5, SIDE, SIDE)
    loss = model.loss(out, batch)["loss"]
    log_p = F.log_softmax(out["logits"], 1).permute(0, 2, 3, 1)[label != 255]
    torch.testing.assert_close(loss, -log_p.gather(1, label[label != 255][:, None]).mean())
    backward_and_step(loss, optimizers)
    moved = changed(before, model)
    assert {n for n, _ in model.named_parameters()} <= moved
    assert {k for k in before if "running_" in k or "num_batches" in k} <= moved
