"""HMNet as a whole on tiny configurations: shots, support order (as the release), train vs eval
(as the release), frozen parts, the frozen-feature path, parameter groups and input checks."""

from __future__ import annotations

import pytest
import torch

from fssam.contract import episode_images
from fssam.contract import supports_feature_cache
from fssam.engine.feature_cache import BatchFeatures, FeatureCache
from fssam.models.hmnet import HMNet
from fssam.models.hmnet.losses import hmnet_losses
from fssam.models.hmnet.model import FROZEN_MODULES, TINY_SIZES
from fssam.models.hmnet.recipe import hmnet_optimizers

SIDE = 33


def tiny(shot: int = 1, backbone: str = "resnet50", seed: int = 0, **kwargs) -> HMNet:
    torch.manual_seed(seed)
    model = HMNet(backbone=backbone, shot=shot, **{**TINY_SIZES, **kwargs})
    with torch.no_grad():  # let the scene difference reach the output (release init: g1 = 0)
        model.gram_merge.weight.copy_(torch.tensor([0.875, 0.5]).view(1, 2, 1, 1))
    return model.eval()


def episode(b: int = 2, shot: int = 1, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(b, shot, SIDE, SIDE, generator=g) > 0.6).long()
    masks[..., :2, :] = 255
    return {"query_img": 255 * torch.rand(b, 3, SIDE, SIDE, generator=g),
            "support_imgs": 255 * torch.rand(b, shot, 3, SIDE, SIDE, generator=g),
            "support_masks": masks}


def copy_weights(source: HMNet, target: HMNet) -> None:
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("kshot_rw.")}
    missing, unexpected = target.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("kshot_rw.") for k in missing)


@pytest.mark.parametrize("backbone", ["resnet50", "vgg"])
@pytest.mark.parametrize("rank_fix", [False, True])
def test_k_copies_of_one_support_give_the_one_shot_result(backbone, rank_fix):
    one = tiny(1, backbone)
    three = tiny(3, backbone, seed=5, kshot_rank_fix=rank_fix)
    copy_weights(one, three)
    batch = episode(shot=1)
    copies = {**batch, "support_imgs": batch["support_imgs"].expand(-1, 3, -1, -1, -1),
              "support_masks": batch["support_masks"].expand(-1, 3, -1, -1)}
    with torch.no_grad():
        expected, actual = one(batch), three(copies)
    torch.testing.assert_close(actual["final"], expected["final"], atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(actual["logits"], expected["logits"], atol=2e-6, rtol=1e-5)


def permuted_outputs(model: HMNet, batch: dict, order: list[int]) -> dict:
    shuffled = {**batch, "support_imgs": batch["support_imgs"][:, order],
                "support_masks": batch["support_masks"][:, order]}
    with torch.no_grad():
        return model(shuffled, return_intermediates=True)


def test_rank_fix_makes_the_output_independent_of_support_order():
    model, batch = tiny(3, kshot_rank_fix=True), episode(shot=3)
    outputs = [permuted_outputs(model, batch, order) for order in ([0, 1, 2], [2, 0, 1])]
    ests = [o["intermediates"]["est_val_shots"] for o in outputs]
    assert not torch.allclose(ests[0], ests[1])  # the shots' scene differences do differ
    torch.testing.assert_close(outputs[0]["final"], outputs[1]["final"], atol=1e-6, rtol=1e-5)


def test_release_weighting_depends_on_support_order():
    model, batch = tiny(3), episode(shot=3)
    outputs = [permuted_outputs(model, batch, order) for order in ([0, 1, 2], [2, 0, 1])]
    est = [o["intermediates"]["est_val"] for o in outputs]
    assert (est[0] - est[1]).abs().max() > 1e-5
    assert (outputs[0]["final"] - outputs[1]["final"]).abs().max() > 1e-6


def test_outputs_and_single_logit_convention():
    model = tiny(2)
    with torch.no_grad():
        out = model(episode(shot=2))
    assert out["final"].shape == (2, 2, SIDE, SIDE) and out["logits"].shape == (2, SIDE, SIDE)
    assert "meta" not in out
    torch.testing.assert_close(out["logits"], out["final"][:, 1] - out["final"][:, 0])


def test_features_through_the_engine_cache_give_the_same_result():
    """The engine's feature-cache protocol: cold and warm cached passes (images encoded one
    at a time) equal the model encoding the batch itself."""
    model, batch = tiny(2), episode(shot=2)
    assert supports_feature_cache(model)
    batch["support_imgs"][1, 1] = batch["support_imgs"][0, 0]   # one image in two episodes
    images, ids = episode_images(batch), ["q0", "q1", "a", "b", "c", "a"]
    cache = FeatureCache(size_gb=0.1)
    cache.begin_pass(model, torch.device("cpu"), None)
    with torch.no_grad():
        direct = model(batch)
        passes = [model(batch, features=BatchFeatures(model, images, ids, cache))
                  for _ in range(2)]
    assert cache.misses == 5 and cache.hits == 1 + 6   # "a" encoded once; warm: all hits
    for out in passes:
        torch.testing.assert_close(out["final"], direct["final"], atol=1e-6, rtol=1e-6)
    assert all(f.grad_fn is None for f in model.encode_images("pspnet", images).values())


def test_encoder_fingerprint_follows_frozen_weights_only():
    model = tiny(1)
    before = model.frozen_encoders()["pspnet"]
    with torch.no_grad():
        model.down_query[0].weight.add_(1)
        model.base_learner[2].bias.add_(1)
    assert model.frozen_encoders()["pspnet"] == before
    with torch.no_grad():
        model.cls[1].running_mean.add_(1)
    assert model.frozen_encoders()["pspnet"] != before
    with pytest.raises(KeyError, match="unknown encoder 'sam2'"):
        model.encode_images("sam2", torch.zeros(1, 3, SIDE, SIDE))


def test_vgg_f1_is_resized_to_layer3_size():
    feats = tiny(1, "vgg").extract_features(255 * torch.rand(1, 3, 97, 97))
    assert [tuple(feats[k].shape[-2:]) for k in ("f1", "f2", "f3", "f4")] == [(7, 7)] * 4


def test_train_mode_keeps_batchnorm_frozen_and_dropout_active():
    model, batch = tiny(1).train(), episode()
    batch["base_class_index"] = torch.tensor([0, 14])
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.base_learner[1].training and model.down_query[2].training
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    outs = [model(batch, return_intermediates=True) for _ in range(2)]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert outs[0]["meta"].shape == (2, 2, SIDE, SIDE)
    torch.testing.assert_close(outs[0]["intermediates"]["query_feats"]["f4"],
                               outs[1]["intermediates"]["query_feats"]["f4"])
    base = [o["intermediates"]["base_out"] for o in outs]
    assert not torch.allclose(base[0], base[1])  # Q9: the frozen head's Dropout2d is active


def test_training_base_map_leaves_out_the_episode_class():
    model, batch = tiny(1).train(), episode()
    batch["base_class_index"] = torch.tensor([3, 0])
    inter = model(batch, return_intermediates=True)["intermediates"]
    probs = inter["base_out"].softmax(1)
    expected = probs[:, 1:].sum(1, keepdim=True) - torch.stack([probs[0, 4], probs[1, 1]])[:, None]
    torch.testing.assert_close(inter["base_map"], expected, atol=1e-6, rtol=1e-5)


def test_training_needs_a_valid_base_class_index():
    model, batch = tiny(1).train(), episode()
    with pytest.raises(ValueError, match="base_class_index"):
        model(batch)
    with pytest.raises(ValueError, match="outside 0..14"):
        model({**batch, "base_class_index": torch.tensor([0, 15])})


def test_only_the_meta_learner_trains():
    model, batch = tiny(2).train(), episode(shot=2)
    batch["base_class_index"] = torch.tensor([1, 2])
    out = model(batch)
    (out["final"].sum() + out["meta"].sum()).backward()
    last = f"mamba.layers.0.blocks.{len(model.mamba.blocks) - 1}."
    unused = (last + "self_attention.out_proj_s.", last + "mlp_s.")  # the release never uses them
    for name, p in model.named_parameters():
        frozen = name.startswith(tuple(f"{m}." for m in FROZEN_MODULES))
        assert p.requires_grad != frozen, name
        assert (p.grad is not None) == (not frozen and not name.startswith(unused)), name


def test_loss_is_the_release_s_on_the_train_outputs():
    model, batch = tiny(1).train(), episode()
    batch.update(base_class_index=torch.tensor([2, 5]),
                 query_mask=(torch.rand(2, SIDE, SIDE) > 0.5).long())
    out = model(batch)
    loss = model.loss(out, batch)
    expected = hmnet_losses(out["final"], out["meta"], batch["query_mask"])
    assert set(loss) == {"loss", "main", "aux"}
    torch.testing.assert_close(loss["loss"], expected["loss"])
    loss["loss"].backward()
    assert model.cls_meta[3].weight.grad is not None


def test_release_optimisers_cover_every_trainable_parameter_once():
    model = tiny(5)
    sgd, adamw = hmnet_optimizers(model)
    ids = [id(p) for o in (sgd, adamw) for g in o.optimizer.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(id(p) for p in trainable)
    mamba = {id(p) for p in model.mamba.parameters()}
    assert {id(p) for g in adamw.optimizer.param_groups for p in g["params"]} == mamba


def test_trainable_state_dict_round_trip_and_mismatch():
    model, other = tiny(2), tiny(2, seed=3)
    state = model.trainable_state_dict()
    assert state and not any(k.startswith(("layer", "ppm.", "cls.", "base_learner."))
                             for k in state)
    other.load_trainable_state_dict(state)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())
    del state["cls_merge.weight"]
    with pytest.raises(KeyError, match="cls_merge.weight"):
        other.load_trainable_state_dict({**state, "bogus.weight": torch.zeros(1)})


@pytest.mark.parametrize("grid, message", [(18, "multiple of 4"), ((16, 20), "square"),
                                           (0, "multiple of 4")])
def test_grid_is_validated(grid, message):
    with pytest.raises(ValueError, match=message):
        HMNet(**{**TINY_SIZES, "grid": grid})


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="backbone 'resnet101'"):
        HMNet(backbone="resnet101", **TINY_SIZES)
    with pytest.raises(ValueError, match="shot must be >= 1"):
        HMNet(shot=0, **TINY_SIZES)
    model = tiny(2)
    with pytest.raises(ValueError, match="built for 2 shot"):
        model(episode(shot=3))
    batch = episode()
    batch.update(query_img=torch.rand(2, 3, SIDE, 49), support_imgs=torch.rand(2, 1, 3, SIDE, 49),
                 support_masks=torch.zeros(2, 1, SIDE, 49, dtype=torch.long))
    with pytest.raises(ValueError, match="square"):
        tiny(1)(batch)
