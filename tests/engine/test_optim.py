"""Learning-rate factors and the scheduled-optimizer wrapper the trainer steps."""

from __future__ import annotations

import pytest
import torch

from fssam.engine.optim import ScheduledOptimizer, constant_factor, poly_factor
from fssam.engine.schedule import poly_lr


def test_zero_based_poly_equals_the_fssam_schedule_bit_for_bit():
    factor = poly_factor(0.9)
    for done in (0, 1, 17, 99, 100):
        assert 1e-3 * factor(done, 100) == poly_lr(1e-3, done, 100, 0.9)


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
