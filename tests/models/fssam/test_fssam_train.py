"""Training behaviour of FSSAM on CPU: trainable/frozen split, no wasted work, state dicts,
building from configs and the authors' release checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from fssam.models.fssam import build_model, load_release_checkpoint
from fssam.models.fssam.model import FSSAM, TRAINABLE_MODULES
from fssam.models.losses import dice_loss
from fssam.models.fssam.prior import PseudoPromptGenerator

PARITY = Path(__file__).resolve().parents[2] / "fixtures" / "parity"
TINY_DINO = dict(embed_dim=32, depth=1, num_heads=2)
DINO_SIZE = 56
NEVER_GRADIENT = ("conv_s0.", "conv_s1.", "iou_prediction_head.", "pred_obj_score_head.")


def episode(b: int, shots: int, size: int = 128, seed: int = 0, priors: bool = True) -> dict:
    gen = torch.Generator().manual_seed(seed)
    masks = (torch.rand(b, shots, size, size, generator=gen) > 0.5).long()
    masks[:, :, :4] = 255
    batch = {"query_img": torch.rand(b, 3, size, size, generator=gen) * 255,
             "support_imgs": torch.rand(b, shots, 3, size, size, generator=gen) * 255,
             "support_masks": masks,
             "query_mask": (torch.rand(b, size, size, generator=gen) > 0.5).long()}
    if priors:
        batch["priors"] = torch.rand(b, 2, size, size, generator=gen)
    return batch


def micro_model(**kwargs) -> FSSAM:
    return build_model(sam2_config=str(PARITY / "sam2_micro_v1.yaml"),
                       sam2_checkpoint=str(PARITY / "micro_weights.pt"), image_size=128,
                       dino_checkpoint=None, dino_input_size=DINO_SIZE, dino_kwargs=TINY_DINO,
                       **kwargs)


@pytest.fixture(scope="module")
def model() -> FSSAM:
    return micro_model()


@pytest.mark.parametrize("shots", [1, 2])
def test_gradients_reach_only_trainable_modules(model, shots):
    model.train()
    model.zero_grad(set_to_none=True)
    grad_enabled: list[bool] = []
    hook = model.sam2.image_encoder.register_forward_pre_hook(
        lambda m, args: grad_enabled.append(torch.is_grad_enabled()))
    batch = episode(2, shots)
    out = model(batch)
    hook.remove()
    assert out["logits"].shape == (2, 128, 128) and out["priors"] is batch["priors"]
    dice_loss(out["logits"], batch["query_mask"]).backward()
    assert grad_enabled == [False]
    for name, param in model.named_parameters():
        trainable = name.startswith(tuple(f"sam2.{m}." for m in TRAINABLE_MODULES))
        assert param.requires_grad == trainable, name
        if not trainable or any(part in name for part in NEVER_GRADIENT):
            assert param.grad is None, name
    for module in TRAINABLE_MODULES:
        grads = [p.grad for p in getattr(model.sam2, module).parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, module
    model.eval()


def test_one_backbone_call_and_no_dinov2_when_priors_given(model, monkeypatch):
    calls: list[tuple[int, ...]] = []
    hook = model.sam2.image_encoder.register_forward_pre_hook(
        lambda m, args: calls.append(tuple(args[0].shape)))
    dino_calls: list[int] = []
    original = PseudoPromptGenerator.extract_features

    def spy(self, *args):
        dino_calls.append(1)
        return original(self, *args)
    monkeypatch.setattr(PseudoPromptGenerator, "extract_features", spy)
    with torch.no_grad():
        model(episode(2, 3))
        assert calls == [(8, 3, 128, 128)] and dino_calls == []
        out = model(episode(2, 3, priors=False))
    hook.remove()
    assert len(calls) == 2 and dino_calls == [1]
    priors = out["priors"]
    assert priors.shape == (2, 2, 128, 128) and 0 <= priors.min() and priors.max() <= 1


def test_any_shot_count_and_batch_size(model):
    with torch.no_grad():
        for b, shots in ((1, 1), (3, 4)):
            assert model(episode(b, shots))["logits"].shape == (b, 128, 128)
    with pytest.raises(ValueError, match="priors"):
        FSSAM(sam2=model.sam2, prior_generator=None)(episode(1, 1, priors=False))


def test_param_groups_and_trainable_state_dict(model):
    groups = model.param_groups()
    assert [g["name"] for g in groups] == list(TRAINABLE_MODULES)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    state = model.trainable_state_dict()
    assert state and all(k.split(".")[1] in TRAINABLE_MODULES for k in state)
    other = micro_model()
    with torch.no_grad():
        for p in other.sam2.memory_attention.parameters():
            p.add_(1)
    other.load_trainable_state_dict(state)
    torch.testing.assert_close(other.trainable_state_dict(), state, atol=0, rtol=0)
    bad = {k: v for k, v in state.items() if "memory_encoder" not in k}
    bad["sam2.image_encoder.neck.convs.0.conv.weight"] = torch.zeros(1)
    with pytest.raises(KeyError) as err:
        other.load_trainable_state_dict(bad)
    assert "memory_encoder.out_proj.weight" in str(err.value)
    assert "sam2.image_encoder.neck.convs.0.conv.weight" in str(err.value)


def release_state(model: FSSAM) -> dict:
    """A checkpoint laid out like the authors' (DataParallel prefixes, DINOv2 hub keys)."""
    torch.manual_seed(1)
    hub = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=518,
                            num_classes=0, **TINY_DINO).state_dict()
    hub["mask_token"] = torch.zeros(1, TINY_DINO["embed_dim"])
    state = {f"module.sam2.{k}": v.clone() + 0.5 for k, v in model.sam2.state_dict().items()}
    state.update({f"module.dino.{k}": v for k, v in hub.items()})
    return state


def test_release_checkpoint_maps_every_key(model, tmp_path):
    path = tmp_path / "train_epoch_100.pth"
    state = release_state(model)
    torch.save({"state_dict": state, "epoch": 100}, path)
    target = micro_model()
    load_release_checkpoint(target, path)
    for key, value in target.sam2.state_dict().items():
        torch.testing.assert_close(value, state[f"module.sam2.{key}"], atol=0, rtol=0)
    blocks = target.prior.dino.blocks[0].attn.qkv.weight
    torch.testing.assert_close(blocks, state["module.dino.blocks.0.attn.qkv.weight"])
    assert target.prior.dino.pos_embed.shape[1] == 1 + (DINO_SIZE // 14) ** 2


def test_release_checkpoint_lists_unmapped_keys(model, tmp_path):
    state = release_state(model)
    state["module.head.weight"] = torch.zeros(1)
    state["module.sam2.extra.weight"] = torch.zeros(1)
    del state["module.sam2.no_obj_ptr"]
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(KeyError) as err:
        load_release_checkpoint(micro_model(), path)
    for key in ("module.head.weight", "module.sam2.extra.weight", "no_obj_ptr"):
        assert key in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_release_checkpoint(model, tmp_path / "missing.pth")


def test_refinement_options_reach_the_model(fssam_factory, parity_batch):
    batch = parity_batch(1)
    with torch.no_grad():
        v1 = fssam_factory()(batch, return_intermediates=True)["intermediates"]["refine"]
        v2 = fssam_factory(num_refine=2, refine_version="v2")(
            batch, return_intermediates=True)["intermediates"]["refine"]
    assert len(v1.steps) == 3 and len(v2.steps) == 2
    assert (v1.steps[1][0] - v2.steps[1][0]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="v3"):
        fssam_factory(refine_version="v3")


def test_fp32_calibration_changes_only_autocast_runs(fssam_factory, parity_batch):
    batch = parity_batch(1)
    release, fp32 = fssam_factory(), fssam_factory(fp32_calibration=True)
    with torch.no_grad():
        assert torch.equal(release(batch)["logits"], fp32(batch)["logits"])  # float32: same
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a, b = release(batch)["logits"].float(), fp32(batch)["logits"].float()
    assert not torch.equal(a, b)
