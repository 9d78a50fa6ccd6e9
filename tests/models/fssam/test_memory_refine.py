"""Iterative Memory Refinement: reference steps, v2, any K and iterations, helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fssam.models.fssam.memory_refine import (cosine, masked_average, minmax, prototype_similarity,
                                        refine_memory)


def refine_inputs(inputs: dict, exp: dict) -> dict:
    """Refinement arguments built from the reference's memories and grid-sized masks/priors."""
    b, shots = inputs["s_y"].shape[:2]
    return dict(mem_fg=exp["qfg_mem"], mem_fb=exp["qae_mem"],
                mem_support=exp["sup_mem"].unflatten(0, (b, shots)),
                support_mask=exp["ref_sup_fg"].unflatten(0, (b, shots)),
                prior_fg=exp["ref_prior_fg"], prior_fb=exp["ref_prior_ae_0"])


@pytest.mark.parametrize("shots", [1, 5])
def test_every_iteration_matches_reference(shots, parity, max_diff):
    exp = parity(f"expected_{shots}shot")
    out = refine_memory(**refine_inputs(parity(f"inputs_{shots}shot"), exp))
    group = "1shot" if shots == 1 else "5shot_default_to_bank"
    max_diff(group, "ref_sim_qry_sup", out.sim_support, exp["ref_sim_qry_sup"], 1e-5)
    assert len(out.steps) == 3
    for i, (mem, prior) in enumerate(out.steps, start=1):
        max_diff(group, f"ref_qae_mem_{i}", mem, exp[f"ref_qae_mem_{i}"], 1e-5)
        max_diff(group, f"ref_prior_ae_{i}", prior, exp[f"ref_prior_ae_{i}"], 1e-5)
    assert out.mem_fb is out.steps[-1][0] and out.prior_fb is out.steps[-1][1]


def test_iterations_compose_and_zero_iterations_is_identity(parity):
    args = refine_inputs(parity("inputs_1shot"), parity("expected_1shot"))
    none = refine_memory(**args, iterations=0)
    assert none.mem_fb is args["mem_fb"] and not none.steps
    five = refine_memory(**args, iterations=5)
    two = refine_memory(**args, iterations=2)
    again = refine_memory(**dict(args, mem_fb=two.mem_fb, prior_fb=two.prior_fb), iterations=3)
    torch.testing.assert_close(five.mem_fb, again.mem_fb, atol=1e-6, rtol=0)


def test_v2_normalises_the_weight(parity):
    args = refine_inputs(parity("inputs_1shot"), parity("expected_1shot"))
    v1 = refine_memory(**args, iterations=1)
    v2 = refine_memory(**args, iterations=1, version="v2")
    sim_fb = prototype_similarity(args["mem_fg"], args["mem_fb"][:, None],
                                  args["prior_fb"][:, None])
    w = minmax(F.relu(v1.sim_support + sim_fb - 1), dim=(-2, -1))
    expected = w * args["mem_fg"] + (1 - w) * args["mem_fb"]
    torch.testing.assert_close(v2.mem_fb, expected, atol=1e-6, rtol=0)
    assert (v1.mem_fb - v2.mem_fb).abs().max() > 1e-3
    with pytest.raises(ValueError, match="v3"):
        refine_memory(**args, version="v3")


def test_support_similarity_is_mean_over_shots_and_order_invariant(parity):
    args = refine_inputs(parity("inputs_5shot"), parity("expected_5shot"))
    mem, mask = args["mem_support"], args["support_mask"]
    sims = [prototype_similarity(args["mem_fg"], mem[:, k:k + 1], mask[:, k:k + 1])
            for k in range(5)]
    all_shots = prototype_similarity(args["mem_fg"], mem, mask)
    torch.testing.assert_close(all_shots, torch.stack(sims).mean(0), atol=1e-6, rtol=0)
    perm = torch.tensor([4, 2, 0, 1, 3])
    out = refine_memory(**args)
    permuted = refine_memory(**dict(args, mem_support=mem[:, perm], support_mask=mask[:, perm]))
    torch.testing.assert_close(out.mem_fb, permuted.mem_fb, atol=1e-6, rtol=0)


def test_helpers():
    feat = torch.tensor([[1.0, 3.0, 5.0]])
    weight = torch.tensor([[1.0, 0.0, 1.0]])
    assert masked_average(feat, weight).item() == pytest.approx(6 / (2 + 5e-4))
    x = torch.tensor([[2.0, 4.0, 3.0]])
    torch.testing.assert_close(minmax(x), torch.tensor([[0.0, 1.0, 0.5]]), atol=1e-6, rtol=0)
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([6.0, 8.0])
    assert cosine(a, b).item() == pytest.approx(50 / (50 + 1e-7))
    assert cosine(torch.zeros(2), b).item() == 0
