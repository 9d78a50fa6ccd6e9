"""The Mamba stack (VSSM) against the release's small VSSM case, its weight layout, its
initialisation and the last block's unused support branch (as the release)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fssam.models.hmnet.mamba import VSSM

TOL = {"atol": 1e-4, "rtol": 1e-4}   # parity README: ss2d_cases.pt


@pytest.fixture(scope="module")
def cases(hmnet_parity):
    return hmnet_parity("ss2d_cases")


def small_vssm(cases: dict) -> VSSM:
    """The release's VSSM(depths=[4], dims=[8]) of ss2d_cases.pt, 16x16 grid."""
    model = VSSM(grid_size=16, dim=8, depth=4, d_inner=16, dt_rank=1)
    model.load_state_dict({k[len("vssm.w."):]: v for k, v in cases.items()
                           if k.startswith("vssm.w.")})
    return model.eval()


def test_vssm_matches_release_block_by_block(cases):
    model = small_vssm(cases)
    q, s = cases["vssm.q_in"].permute(0, 2, 3, 1), cases["vssm.s_in"].permute(0, 2, 3, 1)
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            assert block.self_attention.hybrid == (i % 2 == 1)
            q, s = block(q, s)
            for name, value in (("q", q), ("s", s)):
                torch.testing.assert_close(value, cases[f"vssm.block{i}_{name}"], **TOL,
                                           msg=lambda m: f"block{i}_{name}: {m}")
        out = model(cases["vssm.q_in"], cases["vssm.s_in"])
    torch.testing.assert_close(out, cases["vssm.out"], **TOL)


def test_last_block_support_is_skipped_and_gets_no_gradient(cases):
    """Q8: the output equals the full computation; the last block's out_proj_s and mlp_s
    get no gradient, every other parameter does (blocks: self, hybrid)."""
    torch.manual_seed(0)
    model = VSSM(grid_size=16, dim=8, depth=2, d_inner=16, dt_rank=1).train()
    out = model(cases["vssm.q_in"], cases["vssm.s_in"])
    q, s = cases["vssm.q_in"].permute(0, 2, 3, 1), cases["vssm.s_in"].permute(0, 2, 3, 1)
    with torch.no_grad():
        for block in model.blocks:
            q, s = block(q, s)
    torch.testing.assert_close(out, model.norm(q).permute(0, 3, 1, 2), atol=0, rtol=0)
    out.square().sum().backward()
    last = len(model.blocks) - 1
    unused = (f"layers.0.blocks.{last}.self_attention.out_proj_s.",
              f"layers.0.blocks.{last}.mlp_s.")
    for name, p in model.named_parameters():
        assert (p.grad is None) == name.startswith(unused), name


@pytest.mark.parametrize("backbone", ["resnet50", "vgg"])
def test_release_weights_load_strictly(release_weights, backbone):
    state = release_weights(backbone, "mamba.")
    model = VSSM(grid_size=64)
    assert list(model.state_dict()) == list(state)          # same keys, same order
    model.load_state_dict(state, strict=True)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 9.84   # the release's parameter count


def test_initialisation():
    torch.manual_seed(0)
    model = VSSM(grid_size=16)
    for i, block in enumerate(model.blocks):
        ssm = block.self_attention
        states = torch.arange(1, 17, dtype=torch.float32).log()
        assert torch.equal(ssm.A_logs, states.expand(2048, -1))
        assert torch.equal(ssm.Ds, torch.ones(2048))
        dt = F.softplus(ssm.dt_projs_bias.detach())
        assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
        assert math.log(dt.min() / 1e-3) < 0.05 and math.log(1e-1 / dt.max()) < 0.05
        assert ssm.x_proj_weight.abs().max() <= 512 ** -0.5
        assert ssm.x_proj_weight.abs().max() > 0.99 * 512 ** -0.5
        assert ssm.dt_projs_weight.abs().max() <= 0.25
        assert ssm.dt_projs_weight.abs().max() > 0.99 * 0.25
        linears = [ssm.in_proj_q, ssm.in_proj_s, ssm.out_proj_q, ssm.out_proj_s,
                   block.mlp_q.fc1, block.mlp_q.fc2, block.mlp_s.fc1, block.mlp_s.fc2]
        for linear in linears:
            assert abs(linear.weight.std().item() - 0.02) < 0.002
            assert abs(linear.weight.mean().item()) < 0.001
            assert linear.bias is None or torch.equal(linear.bias, torch.zeros_like(linear.bias))
        for norm in (block.ln_1, block.ln_2, ssm.out_norm):
            assert torch.equal(norm.weight, torch.ones_like(norm.weight))
            assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
        bound = 1 / 3                                           # depthwise 3x3: fan-in 9
        assert ssm.conv2d_q.weight.abs().max() <= bound and ssm.conv2d_q.bias.abs().max() <= bound


@pytest.mark.parametrize("grid_size", [18, 0])
def test_grid_size_must_be_a_multiple_of_the_ratio(grid_size):
    with pytest.raises(ValueError, match="grid_size"):
        VSSM(grid_size=grid_size)


@pytest.mark.parametrize("shape", [(1, 8, 16, 12), (1, 8, 12, 12), (1, 4, 16, 16), (8, 16, 16)])
def test_input_shape_is_checked(cases, shape):
    model = small_vssm(cases)
    good = torch.zeros(1, 8, 16, 16)
    with pytest.raises(ValueError, match="query must be"):
        model(torch.zeros(shape), good)
    with pytest.raises(ValueError, match="support must be"):
        model(good, torch.zeros(shape))
