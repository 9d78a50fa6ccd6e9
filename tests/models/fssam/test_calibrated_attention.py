"""Support-Calibrated Memory Attention: SAM 2 layer reuse, reference layers, K-shot modes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from sam2.modeling.sam.transformer import RoPEAttention

from fssam.models.fssam import sam2_adapter as sam
from fssam.models.fssam.calibrated_attention import (CalibratedRoPEAttention, Calibration, calibrate,
                                                     calibrated, calibrated_attention,
                                                     query_memory_bias)


def test_install_reuses_layer_modules_and_keys(sam2_factory):
    model = sam2_factory()
    before = model.state_dict()
    projections = [layer.cross_attn_image.q_proj for layer in model.memory_attention.layers]
    sam.install_calibrated_attention(model)
    sam.install_calibrated_attention(model)  # idempotent
    assert model.state_dict().keys() == before.keys()
    for layer, q_proj in zip(model.memory_attention.layers, projections):
        attn = layer.cross_attn_image
        assert isinstance(attn, CalibratedRoPEAttention) and isinstance(attn, RoPEAttention)
        assert attn.q_proj is q_proj and not attn.training


def test_without_calibration_it_is_sams_attention(sam2_factory):
    model = sam2_factory()
    original = copy.deepcopy(model.memory_attention.layers[0].cross_attn_image)
    wrapped = CalibratedRoPEAttention(model.memory_attention.layers[0].cross_attn_image)
    torch.manual_seed(0)
    q, k = torch.randn(2, 64, 32), torch.randn(2, 3 * 64 + 6, 16)
    v = torch.randn_like(k)
    torch.testing.assert_close(wrapped(q, k, v, num_k_exclude_rope=6),
                               original(q, k, v, num_k_exclude_rope=6), atol=0, rtol=0)


def memory_attention_layers(model, exp, calibration):
    outs: list[torch.Tensor] = []
    attn = model.memory_attention
    hooks = [layer.register_forward_hook(lambda m, i, o: outs.append(o)) for layer in attn.layers]
    bank = sam.MemoryBank(exp["attn_memory"], exp["attn_memory_pos"],
                          int(exp["attn_num_ptr_tokens"]))
    query = sam.ImageFeatures([exp["attn_curr"]], exp["attn_curr_pos"], [(8, 8)])
    with torch.no_grad():
        pix_feat = sam.attend_memory(model, query, bank, calibration)
    for hook in hooks:
        hook.remove()
    return outs, pix_feat


@pytest.mark.parametrize("shots", [1, 5])
def test_layers_match_reference_on_reference_bank(shots, sam2_factory, parity, max_diff):
    model, exp = sam2_factory(), parity(f"expected_{shots}shot")
    sam.install_calibrated_attention(model)
    masks = exp["attn_memory_mask"].flatten(2)  # the release's first-support mask
    outs, pix_feat = memory_attention_layers(model, exp, Calibration(masks, legacy_kshot=True))
    group = "1shot" if shots == 1 else "5shot_legacy"
    for i, out in enumerate(outs):
        max_diff(group, f"attn_layer{i}_out", out, exp[f"attn_layer{i}_out"], 1e-4)
    max_diff(group, "pix_feat_with_mem", pix_feat, exp["pix_feat_with_mem"], 1e-4)


def test_attend_memory_needs_installed_attention(sam2_factory, parity):
    with pytest.raises(RuntimeError, match="install_calibrated_attention"):
        memory_attention_layers(sam2_factory(), parity("expected_1shot"),
                                Calibration(torch.ones(2, 1, 64)))


def reference_calibration(q, k, v, masks):
    """README: The model steps 2-5 written out per sample, head and shot (default K-shot)."""
    b, heads, n, d = q.shape
    shots = masks.shape[1]
    logits_out = []
    for i in range(b):
        per_head = []
        for h in range(heads):
            keys, vals = k[i, h], v[i, h]
            k_qry = keys[shots * n:(shots + 1) * n]
            c = torch.zeros(n)
            for s in range(shots):
                m = masks[i, s]
                proto = (keys[s * n:(s + 1) * n] * m[:, None]).sum(0) / (m.sum() + 5e-4)
                cos = k_qry @ proto / (k_qry.norm(dim=1) * proto.norm() + 1e-7)
                c += (cos - cos.min()) / (cos.max() - cos.min() + 1e-7) / shots
            k_sup = keys[:shots * n].view(shots, n, d).mean(0)
            v_sup = vals[:shots * n].view(shots, n, d).mean(0)
            k_all = torch.cat([k_sup, keys[shots * n:]])
            v_all = torch.cat([v_sup, vals[shots * n:]])
            logits = q[i, h] @ k_all.T / math.sqrt(d)
            lq = logits[:, n:2 * n]
            a_hat = (lq - lq.min(1, keepdim=True).values) / (
                lq.max(1, keepdim=True).values - lq.min(1, keepdim=True).values + 1e-7)
            logits[:, n:2 * n] = lq + 10 * torch.clamp(a_hat + c[None] - 1, max=0)
            per_head.append(logits.softmax(-1) @ v_all)
        logits_out.append(torch.stack(per_head))
    return torch.stack(logits_out)


def random_bank(shots, b=2, heads=2, n=16, d=8, ptr_tokens=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = (shots + 1) * n + ptr_tokens
    q = torch.randn(b, heads, n, d, generator=gen)
    k, v = torch.randn(b, heads, t, d, generator=gen), torch.randn(b, heads, t, d, generator=gen)
    masks = (torch.rand(b, shots, n, generator=gen) > 0.5).float()
    return q, k, v, masks


@pytest.mark.parametrize("shots", [1, 3])
def test_default_kshot_matches_written_out_definition(shots):
    q, k, v, masks = random_bank(shots)
    k2, v2, score = calibrate(q, k, v, Calibration(masks))
    out = calibrated_attention(q, k2, v2, score)
    torch.testing.assert_close(out, reference_calibration(q, k, v, masks), atol=1e-5, rtol=0)


def test_shot_order_invariance_and_duplicated_shots():
    q, k, v, masks = random_bank(3)
    n = q.shape[-2]
    perm = [2, 0, 1]
    blocks = torch.cat([k[:, :, :3 * n].unflatten(2, (3, n))[:, :, perm].flatten(2, 3),
                        k[:, :, 3 * n:]], 2)
    vblocks = torch.cat([v[:, :, :3 * n].unflatten(2, (3, n))[:, :, perm].flatten(2, 3),
                         v[:, :, 3 * n:]], 2)
    ref = calibrate(q, k, v, Calibration(masks))
    permuted = calibrate(q, blocks, vblocks, Calibration(masks[:, perm]))
    for a, b in zip(ref, permuted):  # float32 rounding ~1e-6
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # three copies of one support give the same keys, values and bias as that support alone
    q1, k1, v1, m1 = random_bank(1)
    rep = lambda x: torch.cat([x[:, :, :n]] * 3 + [x[:, :, n:]], 2)  # noqa: E731
    single = calibrate(q1, k1, v1, Calibration(m1))
    tripled = calibrate(q1, rep(k1), rep(v1), Calibration(m1.repeat(1, 3, 1)))
    for a, b in zip(single, tripled):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_legacy_uses_first_mask_and_block_one_without_averaging():
    q, k, v, masks = random_bank(3)
    n = q.shape[-2]
    k2, v2, score = calibrate(q, k, v, Calibration(masks, legacy_kshot=True))
    assert k2 is k and v2 is v and score.shape == (2, 2, n)
    as_one_shot = calibrate(q, k, v, Calibration(masks[:, :1]))[2]
    torch.testing.assert_close(score, as_one_shot, atol=0, rtol=0)
    changed = masks.clone()
    changed[:, 1:] = 1 - changed[:, 1:]
    torch.testing.assert_close(calibrate(q, k, v, Calibration(changed, legacy_kshot=True))[2],
                               score, atol=0, rtol=0)
    # the bias lands on block 1 (the second support, taken for the query memory) only
    out = calibrated_attention(q, k, v, score)
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    logits[..., n:2 * n] += query_memory_bias(logits[..., n:2 * n], score)
    torch.testing.assert_close(out, logits.softmax(-1) @ v, atol=1e-6, rtol=0)
    plain = F.scaled_dot_product_attention(q, k, v)
    assert (out - plain).abs().max() > 1e-3


def test_bias_has_no_gradient_and_gradients_reach_queries_and_keys():
    q, k, v, masks = random_bank(2)
    q.requires_grad_(True)
    k.requires_grad_(True)
    k2, v2, score = calibrate(q, k, v, Calibration(masks))
    n = q.shape[-2]
    bias = query_memory_bias((q @ k2.transpose(-2, -1))[..., n:2 * n], score)
    assert not bias.requires_grad and score.requires_grad
    assert bias.max() <= 0 and bias.min() >= -20 and (bias < 0).any()
    calibrated_attention(q, k2, v2, score).sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def test_context_is_cleared_after_errors(sam2_factory):
    model = sam2_factory()
    sam.install_calibrated_attention(model)
    layers = [layer.cross_attn_image for layer in model.memory_attention.layers]
    with pytest.raises(ZeroDivisionError):
        with calibrated(layers, Calibration(torch.ones(1, 1, 64))):
            assert all(layer.calibration is not None for layer in layers)
            raise ZeroDivisionError
    assert all(layer.calibration is None for layer in layers)


def test_precision_follows_the_release_unless_fp32_is_asked() -> None:
    # The release computes the calibrated attention in the autocast dtype; fp32=True keeps
    # the logits, the bias and the softmax in float32 under autocast.
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 2, 16, 8, generator=gen)  # (b, heads, N, d)
    k, v = (torch.randn(2, 2, 36, 8, generator=gen) for _ in range(2))  # support, query, ptrs
    score = torch.rand(2, 2, 16, generator=gen)
    reference = calibrated_attention(q, k, v, score)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        island = calibrated_attention(q, k, v, score, fp32=True)
        release = calibrated_attention(q, k, v, score, fp32=False)
    assert island.dtype == torch.float32 and torch.equal(island, reference)
    assert release.dtype == torch.bfloat16
    assert 0 < (release.float() - reference).abs().max() < 0.1
