"""Pseudo Prompt Generator: prior math vs the reference fixtures, DINOv2 loading, the module."""

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from fssam.models.fssam.prior import (PseudoPromptGenerator, generate_priors, load_dinov2_state_dict,
                                masked_average, per_shot_priors)

PARITY = Path(__file__).resolve().parents[2] / "fixtures" / "parity"
TINY = {"vitb14": dict(embed_dim=64, depth=2, num_heads=2),
        "vitg14": dict(embed_dim=48, depth=2, num_heads=2)}
TIMM_NAMES = {"vitb14": "vit_base_patch14_dinov2", "vitg14": "vit_giant_patch14_dinov2"}


def load_prior_fixture(name: str) -> dict:
    """Fixture tensors with the features rebuilt from their integer factors (README)."""
    d = torch.load(PARITY / f"{name}.pt", weights_only=True)

    def feat(a, b, r):
        x = (a.long() @ b.long()) + 8 * d["u"].long()[None, :, None] * r.long()[:, None, :]
        return (x.float() / 16).reshape(-1, 768, 40, 40)

    shots = d["sA"].shape[1]
    d["query_feat"] = feat(d["qA"], d["qB"], d["qR"])
    d["support_feats"] = torch.stack(
        [feat(d["sA"][:, k], d["sB"][:, k], d["sR"][:, k]) for k in range(shots)], dim=1)
    d["out_size"] = tuple(d["fts_size"].tolist())
    return d


@pytest.fixture(scope="module", params=["prior_1shot", "prior_5shot"])
def reference(request) -> dict:
    return load_prior_fixture(request.param)


def test_per_shot_maps_match_reference(reference):
    maps = per_shot_priors(reference["query_feat"], reference["support_feats"], reference["s_mask40"],
                           reference["out_size"])
    for key in ("fg_corr", "bg_corr", "corr"):
        assert maps[key].shape == reference[key].shape
        torch.testing.assert_close(maps[key], reference[key], atol=1e-5, rtol=0)


def test_averaged_priors_match_reference(reference):
    prior_fg, prior_fb = generate_priors(reference["query_feat"], reference["support_feats"],
                                         reference["s_mask40"], reference["out_size"])
    assert prior_fg.shape == prior_fb.shape == (2, 1, 64, 64)
    torch.testing.assert_close(prior_fg, reference["fg_corr"].mean(1, keepdim=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(prior_fb, reference["corr"].mean(1, keepdim=True), atol=1e-5, rtol=0)


def test_raw_similarity_maxima_match_reference(reference):
    protos = masked_average(reference["support_feats"], reference["s_mask40"])  # [b,K,D]
    q = reference["query_feat"].flatten(2)  # [b,D,N]
    cos = F.cosine_similarity(q[:, None], protos[..., None], dim=2, eps=1e-12)
    torch.testing.assert_close(cos.amax(-1), reference["fg_sim_maxs"], atol=1e-5, rtol=0)
    maps = per_shot_priors(reference["query_feat"], reference["support_feats"], reference["s_mask40"],
                           reference["out_size"])
    corr_max = torch.relu(maps["fg_corr"] - maps["bg_corr"]).amax(dim=(-2, -1))
    torch.testing.assert_close(corr_max, reference["corr_max"], atol=1e-5, rtol=0)


def test_shot_order_invariance_and_single_shot():
    d = load_prior_fixture("prior_5shot")
    args = (d["query_feat"], d["support_feats"], d["s_mask40"])
    perm = torch.tensor([3, 0, 4, 2, 1])
    ref = generate_priors(*args, 64)
    permuted = generate_priors(args[0], args[1][:, perm], args[2][:, perm], 64)
    for a, b in zip(ref, permuted):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    one = generate_priors(args[0], args[1][:, 2:3], args[2][:, 2:3], 64)
    torch.testing.assert_close(one[1], d["corr"][:, 2:3], atol=1e-5, rtol=0)


def test_empty_support_mask_gives_finite_priors():
    d = load_prior_fixture("prior_1shot")
    priors = generate_priors(d["query_feat"], d["support_feats"],
                             torch.zeros_like(d["s_mask40"]), 64)
    assert all(torch.isfinite(p).all() for p in priors)


# --- DINOv2 loading --------------------------------------------------------------------------

def to_original_format(state_dict: dict, embed_dim: int, swiglu: bool) -> dict:
    """Inverse of timm's DINOv2 key mapping: add ``mask_token``; SwiGLU fc1/fc2 -> w12/w3."""
    out = {}
    for key, value in state_dict.items():
        if swiglu:
            key = key.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
        out[key] = value.clone()
    out["mask_token"] = torch.randn(1, embed_dim)
    return out


def swiglu_keys(state_dict: dict) -> bool:
    return any(".mlp.w12." in key for key in state_dict)


def bicubic_matrix(n_in: int, n_out: int, scale: float, a: float = -0.75) -> np.ndarray:
    """Cubic-convolution resampling matrix (half-pixel centres, clamped border, given scale)."""
    def kernel(x):
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a if x < 2 else 0.0

    mat = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) / scale - 0.5
        base = int(np.floor(src))
        for tap in range(-1, 3):
            mat[i, min(max(base + tap, 0), n_in - 1)] += kernel(src - (base + tap))
    return mat


def dinov2_resize_reference(pos_embed: torch.Tensor, new: int) -> torch.Tensor:
    """Independent numpy version of DINOv2's grid resize (scale (new + 0.1) / old)."""
    patches = pos_embed[0, 1:].double().numpy()
    old = int(round(patches.shape[0] ** 0.5))
    grid = patches.reshape(old, old, -1)
    mat = bicubic_matrix(old, new, (new + 0.1) / old)
    out = np.einsum("io,ojd,kj->ikd", mat, grid, mat).reshape(new * new, -1)
    return torch.cat([pos_embed[0, :1].double(), torch.from_numpy(out)])[None].float()


@pytest.fixture(params=["vitb14", "vitg14"])
def original_checkpoint(request, tmp_path):
    variant = request.param
    torch.manual_seed(0)
    source = timm.create_model(TIMM_NAMES[variant], pretrained=False, img_size=518,
                               num_classes=0, **TINY[variant])
    assert tuple(source.patch_embed.grid_size) == (37, 37)
    with torch.no_grad():
        source.pos_embed.normal_()
    original = to_original_format(source.state_dict(), TINY[variant]["embed_dim"],
                                  swiglu=variant == "vitg14")
    assert swiglu_keys(original) == (variant == "vitg14")
    path = tmp_path / f"dinov2_{variant}_pretrain.pth"
    torch.save(original, path)
    return variant, path, source.state_dict()


def test_original_checkpoint_loads_every_key(original_checkpoint, monkeypatch):
    variant, path, source = original_checkpoint

    def no_hub(*args, **kwargs):
        raise AssertionError("timm tried to fetch pretrained weights")
    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_hub)
    ppg = PseudoPromptGenerator(variant=variant, checkpoint=str(path), input_size=560,
                                model_kwargs=TINY[variant])
    loaded = ppg.dino.state_dict()
    assert loaded.keys() == source.keys()
    for key, value in source.items():
        if key != "pos_embed":
            torch.testing.assert_close(loaded[key], value, atol=0, rtol=0, msg=key)
    pos = loaded["pos_embed"]
    assert pos.shape == (1, 1 + 40 * 40, TINY[variant]["embed_dim"])
    torch.testing.assert_close(pos[:, 0], source["pos_embed"][:, 0], atol=0, rtol=0)
    # float32 rounding on values up to ~4; leaving out the 0.1 offset changes them by ~0.08
    torch.testing.assert_close(pos, dinov2_resize_reference(source["pos_embed"], 40),
                               atol=5e-5, rtol=0)


def test_pos_embed_resize_differs_from_timm_default(original_checkpoint):
    variant, path, source = original_checkpoint
    ppg = PseudoPromptGenerator(variant=variant, checkpoint=path, model_kwargs=TINY[variant])
    ours = ppg.dino.pos_embed[0, 1:]
    scale = ours.abs().mean()
    for antialias in (True, False):
        timm_way = resample_abs_pos_embed(source["pos_embed"], new_size=(40, 40),
                                          antialias=antialias)[0, 1:]
        assert (ours - timm_way).abs().mean() > 0.01 * scale


def test_unmatched_keys_are_all_named():
    model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=518,
                              num_classes=0, **TINY["vitb14"])
    state = to_original_format(model.state_dict(), 64, swiglu=False)
    del state["blocks.1.attn.qkv.bias"]
    state["blocks.0.extra.weight"] = torch.zeros(1)
    state["norm.weight"] = torch.zeros(3)
    with pytest.raises(KeyError) as err:
        load_dinov2_state_dict(model, state)
    for key in ("blocks.1.attn.qkv.bias", "blocks.0.extra.weight", "norm.weight"):
        assert key in str(err.value)
    assert "mask_token" in state  # the caller's dict is left intact


def test_missing_checkpoint_names_file_and_script(tmp_path):
    missing = tmp_path / "pretrained" / "dinov2_vitb14_pretrain.pth"
    with pytest.raises(FileNotFoundError) as err:
        PseudoPromptGenerator(checkpoint=str(missing), model_kwargs=TINY["vitb14"])
    assert str(missing) in str(err.value)
    assert "scripts/download_weights.py" in str(err.value)


# --- the module ------------------------------------------------------------------------------

def make_episode(shots: int, size: int = 48, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.rand(batch, 3, size, size, generator=g) * 255
    supports = torch.rand(batch, shots, 3, size, size, generator=g) * 255
    masks = torch.zeros(batch, shots, size, size, dtype=torch.int64)
    masks[..., size // 4: size // 2, size // 3:] = 1
    masks[..., size // 4 - 2: size // 4, :] = 255
    return query, supports, masks


@pytest.fixture(scope="module")
def tiny_ppg() -> PseudoPromptGenerator:
    torch.manual_seed(0)
    return PseudoPromptGenerator(checkpoint=None, input_size=112, model_kwargs=TINY["vitb14"])


@pytest.mark.parametrize("shots", [1, 3])
def test_priors_shape_and_range(tiny_ppg, shots):
    query, supports, masks = make_episode(shots)
    prior_fg, prior_fb = tiny_ppg(query, supports, masks)
    for prior in (prior_fg, prior_fb):
        assert prior.shape == (2, 1, 48, 48)
        assert prior.min() >= 0 and prior.max() <= 1 + 1e-6
        assert prior.std() > 0


def test_priors_invariant_to_support_order(tiny_ppg):
    query, supports, masks = make_episode(3)
    masks[:, 1, :10] = 1  # make the shots differ
    perm = torch.tensor([2, 0, 1])
    ref = tiny_ppg(query, supports, masks)
    permuted = tiny_ppg(query, supports[:, perm], masks[:, perm])
    for a, b in zip(ref, permuted):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_ignore_label_counts_as_background(tiny_ppg):
    query, supports, masks = make_episode(2)
    ref = tiny_ppg(query, supports, masks)
    cleared = tiny_ppg(query, supports, masks.masked_fill(masks == 255, 0))
    for a, b in zip(ref, cleared):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_frozen_no_grad_eval_and_one_dinov2_call(tiny_ppg, monkeypatch):
    calls = []
    original = tiny_ppg.dino.forward_intermediates

    def spy(x, **kwargs):
        calls.append(x.detach().clone())
        return original(x, **kwargs)
    monkeypatch.setattr(tiny_ppg.dino, "forward_intermediates", spy)
    tiny_ppg.train()
    assert not tiny_ppg.training and not tiny_ppg.dino.training
    assert not any(p.requires_grad for p in tiny_ppg.parameters())
    query, supports, masks = make_episode(3)
    query.requires_grad_(True)
    prior_fg, prior_fb = tiny_ppg(query, supports, masks)
    assert not prior_fg.requires_grad and not prior_fb.requires_grad
    assert len(calls) == 1 and calls[0].shape == (2 * 4, 3, 112, 112)
    images = torch.cat([query.detach(), supports.flatten(0, 1)])  # queries, then supports
    resized = F.interpolate(images, size=(112, 112), mode="bilinear", align_corners=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(calls[0], (resized - mean) / std, atol=1e-5, rtol=0)


def test_priors_follow_the_autocast_dtype_unless_fp32(tiny_ppg):
    # The release computes the priors under its bf16 autocast; fp32=True keeps them float32.
    query, supports, masks = make_episode(2)
    b, k = supports.shape[:2]
    feats = tiny_ppg.extract_features(torch.cat([query, supports.flatten(0, 1)]))
    args = (feats[:b], feats[b:].unflatten(0, (b, k)), masks, (48, 48))
    reference = tiny_ppg.priors_from_features(*args)
    assert all(torch.equal(a, r) for a, r in
               zip(tiny_ppg.priors_from_features(*args, fp32=True), reference))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        island = tiny_ppg.priors_from_features(*args, fp32=True)
        release = tiny_ppg.priors_from_features(*args, fp32=False)
    for a, r in zip(island, reference):
        assert a.dtype == torch.float32 and torch.equal(a, r)
    for a, r in zip(release, reference):
        assert a.dtype == torch.float32 and 0 < (a - r).abs().max() < 0.1
