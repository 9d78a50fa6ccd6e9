"""The SAM 2 adapter: building, features, mask prompts, memory bank, ungated decoding."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fssam.models.fssam import sam2_adapter as sam

PARITY = Path(__file__).resolve().parents[2] / "fixtures" / "parity"
MICRO_CONFIG = str(PARITY / "sam2_micro_v1.yaml")


def test_build_from_yaml_applies_video_predictor_overrides(sam2_factory):
    model = sam2_factory()
    assert not model.training
    assert model.image_size == 128 and model.sam_image_embedding_size == 8
    decoder = model.sam_mask_decoder
    assert decoder.dynamic_multimask_via_stability
    assert decoder.dynamic_multimask_stability_delta == 0.05
    assert decoder.dynamic_multimask_stability_thresh == 0.98
    assert model.binarize_mask_from_pts_for_mem_enc


def test_image_size_override_sets_grid_and_rope_tables():
    model = sam.build_sam2(MICRO_CONFIG, None, image_size=64)
    assert model.image_size == 64 and model.sam_image_embedding_size == 4
    for layer in model.memory_attention.layers:
        assert layer.self_attn.freqs_cis.shape[0] == 16
        assert layer.cross_attn_image.freqs_cis.shape[0] == 16
    feats = sam.image_features(model, torch.rand(3, 3, 64, 64) * 255)
    assert [tuple(m.shape) for m in feats.maps()] == [(3, 4, 16, 16), (3, 8, 8, 8), (3, 32, 4, 4)]


@pytest.mark.parametrize("name", ["sam2_hiera_t.yaml", "configs/sam2/sam2_hiera_t.yaml"])
def test_package_config_by_name_random_init_warns(name, caplog):
    with caplog.at_level(logging.WARNING):
        model = sam.build_sam2(name, None, image_size=256)
    assert model.image_size == 256 and model.sam_image_embedding_size == 16
    assert "random weights" in caplog.text


def test_shipped_micro_config_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = sam.build_sam2("sam2_micro.yaml", None, image_size=64)
    assert model.image_size == 64 and model.hidden_dim == 32 and model.mem_dim == 16


def test_missing_config_and_checkpoint_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="sam2_hiera_xl.yaml"):
        sam.build_sam2("sam2_hiera_xl.yaml", None)
    missing = tmp_path / "sam2_hiera_small.pt"
    with pytest.raises(FileNotFoundError, match="sam2_hiera_small.pt"):
        sam.build_sam2(MICRO_CONFIG, str(missing), image_size=None)


def test_checkpoint_loads_strictly(tmp_path, sam2_factory):
    state = sam2_factory().state_dict()
    good = tmp_path / "good.pt"
    torch.save({"model": state}, good)
    model = sam.build_sam2(MICRO_CONFIG, str(good), image_size=None)
    torch.testing.assert_close(model.state_dict(), state, atol=0, rtol=0)
    extra = tmp_path / "extra.pt"
    torch.save({"model": {**state, "bogus.weight": torch.zeros(1)}}, extra)
    with pytest.raises(RuntimeError, match="bogus.weight"):
        sam.build_sam2(MICRO_CONFIG, str(extra), image_size=None)
    missing = tmp_path / "missing.pt"
    torch.save({"model": {k: v for k, v in state.items() if k != "no_obj_ptr"}}, missing)
    with pytest.raises(RuntimeError, match="no_obj_ptr"):
        sam.build_sam2(MICRO_CONFIG, str(missing), image_size=None)


def test_normalisation_is_imagenet_on_unit_range():
    images = torch.rand(2, 3, 4, 4) * 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(sam.normalise_images(images), (images / 255 - mean) / std)


def test_features_have_no_gradient_and_batch_independent(sam2_factory, parity_batch):
    model = sam2_factory()
    batch = parity_batch(1)
    both = sam.image_features(model, torch.cat([batch["query_img"], batch["support_imgs"][:, 0]]))
    alone = sam.image_features(model, batch["query_img"])
    assert not any(f.requires_grad for f in both.feats + [both.top_pos])
    for a, b in zip(both.select(slice(0, 2)).maps(), alone.maps()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_query_fg_pointer_matches_reference(sam2_factory, parity, parity_batch, max_diff):
    """The fg prior's pointer is unused by the model, but SAM 2's method still matches."""
    model, exp = sam2_factory(), parity("expected_1shot")
    feats = sam.image_features(model, parity_batch(1)["query_img"])
    with torch.no_grad():
        low_res, ptr = sam.mask_prompt_pointers(model, feats, exp["prior_fg_in"])
    max_diff("1shot", "qfg_lowres_mask", low_res, exp["qfg_lowres_mask"], 1e-5)
    max_diff("1shot", "qfg_obj_ptr", ptr, exp["qfg_obj_ptr"], 1e-5)


def test_empty_support_mask_gets_no_object_pointer(sam2_factory, parity):
    model, exp = sam2_factory(), parity("expected_5shot")
    empty = 1 * 5 + 3  # sample 1, shot 3 has no foreground
    torch.testing.assert_close(exp["sup_obj_ptr"][empty], model.no_obj_ptr[0].detach())
    feats = sam.ImageFeatures([f.flatten(2).permute(2, 0, 1) for f in
                               (exp["sup_feat_l0"], exp["sup_feat_l1"], exp["sup_feat_l2"])],
                              torch.zeros(1), [(32, 32), (16, 16), (8, 8)])
    masks = torch.zeros(10, 1, 128, 128)
    with torch.no_grad():
        _, ptr = sam.mask_prompt_pointers(model, feats, masks)
    torch.testing.assert_close(ptr, model.no_obj_ptr.expand(10, -1).detach())


def test_memory_bank_layout(sam2_factory):
    model = sam2_factory()
    b, frames, mem_dim, grid = 2, 3, 16, 8
    mems = torch.randn(b, frames, mem_dim, grid, grid)
    pos = torch.randn(b, frames, mem_dim, grid, grid)
    ptrs = torch.randn(b, frames, 32)
    bank = sam.memory_bank(model, mems, pos, ptrs)
    n = grid * grid
    assert bank.memory.shape == (frames * n + frames * 2, b, mem_dim)
    assert bank.num_ptr_tokens == frames * 2
    tpos = model.maskmem_tpos_enc[model.num_maskmem - 1, 0, 0]
    # frame 1, position (row 2, col 5) -> token n + 2*8 + 5
    torch.testing.assert_close(bank.memory[n + 21, 0], mems[0, 1, :, 2, 5])
    torch.testing.assert_close(bank.pos[n + 21, 1], pos[1, 1, :, 2, 5] + tpos)
    # pointer of frame 2 -> tokens 2*2 and 2*2+1 of the pointer block, halves in order
    first = frames * n + 4
    torch.testing.assert_close(bank.memory[first, 1], ptrs[1, 2, :16])
    torch.testing.assert_close(bank.memory[first + 1, 1], ptrs[1, 2, 16:])
    assert bank.pos[frames * n:].abs().max() == 0


def test_decode_is_not_gated_by_object_score(sam2_factory, parity, max_diff):
    model, exp = sam2_factory(), parity("expected_1shot")
    high_res = [exp["qry_feat_l0"], exp["qry_feat_l1"]]
    with torch.no_grad():
        ours = sam.decode(model, exp["pix_feat_with_mem"], high_res, (128, 128))
        package = model._forward_sam_heads(exp["pix_feat_with_mem"], high_res_features=high_res,
                                           multimask_output=True)
    max_diff("1shot", "dec_lowres_multimasks", ours.lowres_multimasks,
             exp["dec_lowres_multimasks"], 1e-5)
    max_diff("1shot", "logits", ours.logits, exp["logits"], 1e-5)
    positive = ours.object_score_logits[:, 0] > 0
    assert positive.any() and (~positive).any()
    # where the score is positive the package agrees; elsewhere it gates to -1024
    torch.testing.assert_close(ours.logits[positive], package[4][positive, 0])
    assert (package[4][~positive] == -1024).all()
    assert ours.logits[~positive].abs().max() < 1


def test_decode_passes_gradient_to_decoder(sam2_factory, parity):
    model, exp = sam2_factory(), parity("expected_1shot")
    pix_feat = exp["pix_feat_with_mem"].clone().requires_grad_(True)
    out = sam.decode(model, pix_feat, [exp["qry_feat_l0"], exp["qry_feat_l1"]], (128, 128))
    out.logits.sum().backward()
    assert pix_feat.grad[0].abs().sum() > 0  # sample 0 has a negative object score
    assert model.sam_prompt_encoder.no_mask_embed.weight.grad is None


def test_import_leaves_hydra_state_alone():
    """sam2's import initialises Hydra; fssam.models.fssam undoes that only if it did it."""
    script = (
        "from hydra.core.global_hydra import GlobalHydra\n"
        "from hydra import initialize\n"
        "import fssam.models.fssam.sam2_adapter\n"
        "assert not GlobalHydra.instance().is_initialized()\n"
        "import importlib, sys\n"
        "for name in [m for m in sys.modules if m.startswith(('fssam.models', 'sam2'))]:\n"
        "    del sys.modules[name]\n"
        "with initialize(version_base='1.3', config_path=None):\n"
        "    importlib.import_module('fssam.models.fssam')\n"
        "    assert GlobalHydra.instance().is_initialized()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
