"""Learning-rate factors and the scheduled-optimizer wrapper the trainer steps."""

from __future__ import annotations

import pytest
import torch

from fssam.contract import ScheduledOptimizer, constant_factor, poly_factor
from fssam.engine.optim import backward_and_step, load_optimizer_states, optimizer_states


def test_zero_based_poly_is_designs_schedule_bit_for_bit():
    factor = poly_factor(0.9)
    for done in (0, 1, 17, 99, 100):  # the 0-based poly schedule: finished steps, power 0.9
        assert 1e-3 * factor(done, 100) == 1e-3 * max(0.0, 1.0 - done / 100) ** 0.9


def test_one_based_poly_counts_the_step_being_taken():
    factor = poly_factor(0.9, one_based=True)
    assert factor(0, 10) == pytest.approx(0.9 ** 0.9)
    assert factor(9, 10) == 0.0
    assert factor(12, 10) == 0.0


def test_set_lr_scales_each_groups_own_base_rate():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}], lr=1.0)
    scheduled = ScheduledOptimizer("sgd", opt, poly_factor(1.0))
    assert scheduled.set_lr(5, 10) == pytest.approx(0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    scheduled.set_lr(0, 10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.0, 0.1])


def test_constant_factor_is_one_throughout():
    assert {constant_factor(done, 7) for done in range(8)} == {1.0}


def _two_optimizers() -> tuple[torch.nn.Linear, list[ScheduledOptimizer]]:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    sgd = torch.optim.SGD([net.weight], lr=0.1, momentum=0.9)
    adamw = torch.optim.AdamW([net.bias], lr=0.01)
    return net, [ScheduledOptimizer("sgd", sgd, poly_factor(0.9)),
                 ScheduledOptimizer("adamw", adamw, constant_factor)]


def test_backward_and_step_moves_every_optimizers_parameters():
    net, optimizers = _two_optimizers()
    before = [p.detach().clone() for p in net.parameters()]
    backward_and_step(net(torch.ones(4, 3)).square().sum(), optimizers)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_optimizer_states_round_trip_by_name(tmp_path):
    net, optimizers = _two_optimizers()
    backward_and_step(net(torch.ones(4, 3)).sum(), optimizers)
    saved = {"optimizers": optimizer_states(optimizers)}
    _, fresh = _two_optimizers()
    load_optimizer_states(fresh[::-1], saved, tmp_path / "last.pt")
    momentum = fresh[0].optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, saved["optimizers"]["sgd"]["state"][0]["momentum_buffer"])
    with pytest.raises(ValueError, match=r"holds optimizers \['adamw', 'sgd'\], this run has \['sgd'\]"):
        load_optimizer_states(fresh[:1], saved, tmp_path / "last.pt")


def test_single_optimizer_checkpoints_still_load(tmp_path):
    net, optimizers = _two_optimizers()
    backward_and_step(net(torch.ones(4, 3)).sum(), optimizers[:1])
    legacy = {"optimizer": optimizers[0].optimizer.state_dict()}
    _, fresh = _two_optimizers()
    load_optimizer_states(fresh[:1], legacy, tmp_path / "last.pt")
    assert fresh[0].optimizer.state_dict()["state"]


def test_fssam_first_step_already_decays_as_in_the_release():
    from fssam.models.fssam.recipe import fssam_optimizers

    net = torch.nn.Linear(2, 2)
    net.param_groups = lambda: [{"params": list(net.parameters())}]
    (adamw,) = fssam_optimizers(net)
    total = 500
    assert adamw.set_lr(0, total) == pytest.approx(1e-3 * (1 - 1 / total) ** 0.9, rel=1e-12)
    assert adamw.set_lr(total - 1, total) == 0.0  # the last step runs at rate 0
    (ours,) = fssam_optimizers(net, one_based=False)
    assert ours.set_lr(0, total) == 1e-3
