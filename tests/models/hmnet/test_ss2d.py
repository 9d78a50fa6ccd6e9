"""SS2D against the release's small cases (ss2d_cases.pt), its token orders, the QIM step
against the release's selective_scan_cross cases, and the hybrid core's invariants."""

from __future__ import annotations

import pytest
import torch

from fssam.models.hmnet.ss2d import SS2D, hybrid_orders, query_intercepted_step, self_orders

TOL = {"atol": 1e-4, "rtol": 1e-4}   # parity README: ss2d_cases.pt / scan_cases.pt


def close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), **TOL,
                               msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def cases(hmnet_parity):
    return hmnet_parity("ss2d_cases")


def small_ss2d(cases: dict, case: str, **kwargs) -> SS2D:
    """The release's SS2D of a small case (d_model 8, d_inner 16, dt_rank 1, 16x16)."""
    module = SS2D(dim=8, d_inner=16, d_state=16, dt_rank=1, grid_size=16, ratio=4,
                  hybrid=case == "mix", **kwargs)
    prefix = f"{case}.w."
    module.load_state_dict({k[len(prefix):]: v for k, v in cases.items() if k.startswith(prefix)})
    return module.eval()


def release_convention(order: torch.Tensor, side: int) -> torch.Tensor:
    """Support token j written as -(1 + j), as in ``order.mix_N``."""
    order = order.clone()
    support = order >= side * side
    order[support] = -(1 + order[support] - side * side)
    return order


@pytest.mark.parametrize("side", [16, 64])
def test_token_orders_match_release(cases, side):
    assert torch.equal(self_orders(side), cases[f"order.self_{side}"].long())
    assert torch.equal(release_convention(hybrid_orders(side, 4), side),
                       cases[f"order.mix_{side}"].long())


def check_branch_inputs(module: SS2D, cases: dict, case: str) -> None:
    for branch in "qs":
        x_in = cases[f"{case}.{branch}_in"]
        in_proj, conv = getattr(module, f"in_proj_{branch}"), getattr(module, f"conv2d_{branch}")
        x, z = in_proj(x_in).chunk(2, dim=-1)
        close(x, cases[f"{case}.x_{branch}"], f"{case}.x_{branch}")
        close(z, cases[f"{case}.z_{branch}"], f"{case}.z_{branch}")
        u, _ = module.branch_input(x_in, in_proj, conv)
        close(u, cases[f"{case}.conv_{branch}"], f"{case}.conv_{branch}")


def test_self_ss2d_matches_release(cases, recorded):
    module = small_ss2d(cases, "self")
    with torch.no_grad():
        check_branch_inputs(module, cases, "self")
        dq, ds = module(cases["self.q_in"], cases["self.s_in"])
        close(dq, cases["self.out_q"], "self.out_q")
        close(ds, cases["self.out_s"], "self.out_s")
        (args, out), = recorded["scan"]      # query and support in one call, query first
        for name in ("u", "delta", "B", "C"):
            close(args[name][:1], cases[f"self.scan_q_{name}"], f"self.scan_q_{name}")
        for name in ("A", "D", "delta_bias"):
            close(args[name], cases[f"self.scan_q_{name}"], f"self.scan_q_{name}")
        close(out[:1], cases["self.scan_q_out"], "self.scan_q_out")
        for branch in "qs":
            core = module.self_core(cases[f"self.conv_{branch}"])
            close(core, cases[f"self.core_{branch}"], f"self.core_{branch}")


def test_hybrid_ss2d_matches_release(cases, recorded):
    module = small_ss2d(cases, "mix")
    with torch.no_grad():
        check_branch_inputs(module, cases, "mix")
        dq, ds = module(cases["mix.q_in"], cases["mix.s_in"])
        close(dq, cases["mix.out_q"], "mix.out_q")
        close(ds, cases["mix.out_s"], "mix.out_s")
    (recap, recap_out), (state, (state_out, last)) = recorded["scan"]
    close(recap["u"], cases["mix.scan2_u"], "mix.scan2_u")
    close(recap_out, cases["mix.scan2_out"], "mix.scan2_out")
    for name in ("u", "delta", "B", "C"):
        close(state[name], cases[f"mix.scan1_{name}"], f"mix.scan1_{name}")
    close(state_out, cases["mix.scan1_out"], "mix.scan1_out")
    close(last, cases["mix.scan1_last_state"], "mix.scan1_last_state")
    for call in (recap, state):
        for name in ("A", "D", "delta_bias"):
            close(call[name], cases[f"mix.scan_{name}"], f"mix.scan_{name}")
    (qim, qim_out), = recorded["qim"]
    close(qim["u"].view(1, 16, 4, 4), cases["mix.x_q_dwn"], "mix.x_q_dwn")
    close(state["u"][:, :16].view(1, 16, 4, 4), cases["mix.x_s_dwn"], "mix.x_s_dwn")
    close(qim["h"], cases["mix.cross_h_s"], "mix.cross_h_s")
    for name, key in (("u", "u"), ("delta", "delta"), ("A", "A"), ("D", "D")):
        close(qim[name], cases[f"mix.cross_{key}"], f"mix.cross_{key}")
    assert qim["D"].shape == cases["mix.cross_D"].shape == (1,)     # the release's scalar Ds[0]
    close(qim["B"], cases["mix.cross_B"][:, 0], "mix.cross_B")
    close(qim["C"], cases["mix.cross_C"][:, 0], "mix.cross_C")
    close(qim["delta_bias"], cases["mix.scan_delta_bias"][:16], "mix.cross delta_bias")
    close(qim_out, cases["mix.cross_out"], "mix.cross_out")
    with torch.no_grad():
        core_q, core_s = module.hybrid_core(cases["mix.conv_q"], cases["mix.conv_s"])
    close(core_q, cases["mix.core_q"], "mix.core_q")
    close(core_s, cases["mix.core_s"], "mix.core_s")


@pytest.mark.parametrize("name", ["cross_small", "cross_hmnet_like"])
def test_query_intercepted_step_matches_release_cases(hmnet_parity, name):
    data = hmnet_parity("scan_cases")
    arg = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith(name + ".")}
    out = query_intercepted_step(arg["h"], arg["u"], arg["delta"], arg["A"], arg["B"][:, 0],
                                 arg["C"][:, 0], arg["D"], arg["delta_bias"])
    close(out, arg["out"], name)


def test_qim_per_channel_d_switch(cases, recorded):
    """Default: the release's scalar Ds[0] for all channels; the switch: Ds[0:d_inner]."""
    outputs = {}
    for per_channel in (False, True):
        module = small_ss2d(cases, "mix", qim_per_channel_d=per_channel)
        with torch.no_grad():
            outputs[per_channel] = module(cases["mix.q_in"], cases["mix.s_in"])[0]
    (default, _), (switched, _) = recorded["qim"]
    Ds = cases["mix.w.Ds"]
    assert torch.equal(default["D"], Ds[:1]) and torch.equal(switched["D"], Ds[:16])
    assert (outputs[False] - outputs[True]).abs().max() > 1e-3


def test_support_state_is_the_recap_scan_state_after_the_first_support(cases, recorded):
    """h_k (scan of the first P tokens only) is the recapped scan's state at step P-1: one
    step from it reproduces the recapped scan's output at step P, in every direction."""
    module = small_ss2d(cases, "mix")
    with torch.no_grad():
        module(cases["mix.q_in"], cases["mix.s_in"])
    (recap, recap_out), (_, (_, last)) = recorded["scan"]
    P, d = 16, 16
    at_p = slice(P, P + 1)
    # B, C are shared per direction group: step each direction with its own group
    for k in range(4):
        rows = slice(k * d, (k + 1) * d)
        step = query_intercepted_step(
            last[:, rows], recap["u"][:, rows, at_p], recap["delta"][:, rows, at_p],
            recap["A"][rows], recap["B"][:, k, :, at_p], recap["C"][:, k, :, at_p],
            recap["D"][rows], recap["delta_bias"][rows])
        close(step, recap_out[:, rows, at_p], f"direction {k} step P")


def test_qim_token_depends_only_on_itself_and_the_support_state():
    torch.manual_seed(0)
    b, d, n, length = 2, 6, 4, 9
    h, u, delta = torch.randn(b, d, n), torch.randn(b, d, length), torch.randn(b, d, length)
    A, B, C = -torch.rand(d, n) - 0.1, torch.randn(b, n, length), torch.randn(b, n, length)
    D, bias = torch.randn(d), torch.randn(d)
    base = query_intercepted_step(h, u, delta, A, B, C, D, bias)
    for tensor in (u, delta, B, C):
        moved = tensor.clone()
        moved[..., 4] += 1.0
        args = [moved if t is tensor else t for t in (u, delta, B, C)]
        out = query_intercepted_step(h, args[0], args[1], A, args[2], args[3], D, bias)
        others = [t for t in range(length) if t != 4]
        assert torch.equal(out[..., others], base[..., others])
        assert (out[..., 4] - base[..., 4]).abs().max() > 1e-3
    assert (query_intercepted_step(h + 1, u, delta, A, B, C, D, bias) - base).abs().min() > 0


def test_support_state_carries_no_gradient(cases, recorded):
    module = small_ss2d(cases, "mix").train()
    q_in, s_in = cases["mix.q_in"], cases["mix.s_in"].clone().requires_grad_()
    dq, _ = module(q_in, s_in, need_support=False)
    (qim, _), = recorded["qim"]
    assert not qim["h"].requires_grad
    dq.sum().backward()
    assert s_in.grad is not None and s_in.grad.abs().sum() > 0   # via the recapped scan


def test_scan_runs_in_float32_under_autocast(cases, recorded):
    module = small_ss2d(cases, "mix")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        dq, ds = module(cases["mix.q_in"], cases["mix.s_in"])
    for args, _ in recorded["scan"]:
        assert all(args[k].dtype == torch.float32 for k in ("u", "delta", "A", "B", "C", "D"))
    torch.testing.assert_close(dq.float(), cases["mix.out_q"], atol=0.3, rtol=0.05)
