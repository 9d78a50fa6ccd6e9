"""The real-size Mamba stack (64x64, 8 blocks, release weights) against the VGG 1-shot
case: the only expected file whose stack inputs can be rebuilt exactly from stored full
tensors (``q_mid_down``, ``s_mid_down``, ``supp_pro_shots``, ``s_mask64``,
``corr_query_mask``); the other files store the stack inputs as probes only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fssam.models.hmnet.mamba import VSSM

TOL = {"atol": 5e-4, "rtol": 1e-3}   # parity README: Mamba-stack tensors and their probes
SIDE = 64
KEYS = ["q_merged", "s_merged", "vssm_block0_q", "vssm_block0_s", "vssm_block1_q",
        "vssm_block1_s", "vssm_block7_q", "vssm_out"]


def probes(t: torch.Tensor, pool: int) -> dict[str, torch.Tensor]:
    """The parity README's probes of a 4-D tensor [b, C, H, W]."""
    p = t.mean(dim=1)
    if pool > 1:
        p = F.avg_pool2d(p[:, None], pool)[:, 0]
    c, d = max(0, (t.shape[2] - 8) // 2), max(0, (t.shape[3] - 8) // 2)
    return {"cmean": t.mean(dim=(2, 3)), "pmean": p, "crop": t[:, :8, c:c + 8, d:d + 8]}


def stack_inputs(e: dict, merge: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """q_merged / s_merged of a 1-shot case from its stored full tensors (HMNET.md §2.4-2.7)."""
    assert e["meta"]["shot"] == 1

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=True)
    prototype = e["supp_pro_shots"][:, 0, :, None, None].expand(-1, -1, SIDE, SIDE)
    mask = e["s_mask64"]
    query = torch.cat([up(e["q_mid_down"]), prototype, 10 * e["corr_query_mask"]], dim=1)
    support = torch.cat([up(e["s_mid_down"]) * mask, prototype, mask], dim=1)
    return (F.conv2d(query, merge["init_merge_query.0.weight"]),
            F.conv2d(support, merge["init_merge_supp.0.weight"]))


@pytest.fixture(scope="module")
def vgg_1shot(hmnet_parity, release_weights):
    """Expected tensors and ours (channels-first) from one forward of the stack."""
    expected = hmnet_parity("expected_vgg_1shot")
    merge = {f"init_merge_{k}": v for k, v in release_weights("vgg", "init_merge_").items()}
    query, support = stack_inputs(expected, merge)
    model = VSSM(grid_size=SIDE).eval()
    model.load_state_dict(release_weights("vgg", "mamba."), strict=True)
    ours = {"q_merged": query, "s_merged": support}

    def keep(i: int):
        def hook(module, args, output):
            for name, value in zip("qs", output):
                if value is not None:
                    ours[f"vssm_block{i}_{name}"] = value.permute(0, 3, 1, 2)
        return hook
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(keep(i))
    with torch.no_grad():
        ours["vssm_out"] = model(query, support)
    return expected, ours


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_real_size_stack_matches_release(vgg_1shot, key):
    expected, ours = vgg_1shot
    pool = expected["meta"]["pmean_pool"][key]
    for probe, value in probes(ours[key], pool).items():
        torch.testing.assert_close(value, expected[f"{key}@{probe}"], **TOL,
                                   msg=lambda m: f"{key}@{probe}: {m}")


@pytest.mark.slow
def test_last_block_support_output_is_not_computed(vgg_1shot):
    """Q8 at real size: the last block returns no support output."""
    assert "vssm_block7_s" not in vgg_1shot[1] and "vssm_block6_s" in vgg_1shot[1]
