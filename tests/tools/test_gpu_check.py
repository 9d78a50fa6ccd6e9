"""The model-level machine checks on the micro model (CPU): what makes each pass or fail."""

from __future__ import annotations

import math

import pytest
import torch

from fssam.tools import gpu_check as gc
from fssam.tools.gpu_check_run import RandomModel, build_random_model, format_table, table_rows

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def micro(one_thread) -> RandomModel:
    return build_random_model("micro", CPU)


def test_precision_rows(micro) -> None:
    model, size = micro.model, micro.size
    row = gc.check_precision(model, CPU, shots=2, size=size)
    assert row["shots"] == 2 and row["finite"] and 0 <= row["max_logit_diff"] < 1
    assert 0.99 <= row["mask_agreement"] <= 1 and row["passed"]


def test_training_steps_touch_only_trainable_modules(micro) -> None:
    model, size = micro.model, micro.size
    result = gc.check_training(model, micro.optimizers, CPU, batch=2, shots=1, size=size,
                               steps=1, amp=True)
    assert result["passed"] and len(result["losses"]) == 1 and math.isfinite(result["losses"][0])
    assert not result["bf16"] and result["peak_gb"] is None  # CPU: float32, no CUDA memory
    grads = result["gradients"]
    assert set(grads["trainable_tensors_with_grad"]) == {
        f"adamw/{name}" for name in ("sam_mask_decoder", "memory_encoder", "memory_attention")}
    assert all(grads["trainable_tensors_with_grad"].values())
    assert all(p.grad is None for p in model.parameters())  # cleared afterwards


def test_gradient_report_flags_frozen_gradients(micro) -> None:
    model = micro.model
    groups = {id(p): f"adamw/{g['name']}" for o in micro.optimizers(model, 2)
              for g in o.optimizer.param_groups for p in g["params"]}
    name, frozen = next((n, p) for n, p in model.named_parameters() if id(p) not in groups)
    frozen.grad = torch.ones_like(frozen)
    try:
        report = gc.gradient_report(model, groups)
    finally:
        model.zero_grad(set_to_none=True)
    assert not report["passed"] and report["frozen_with_grad"] == [name]
    assert not any(report["trainable_tensors_with_grad"].values())


def test_non_finite_loss_fails_the_training_check(micro, monkeypatch) -> None:
    model, size = micro.model, micro.size
    real = gc.RandomEpisodes.__getitem__

    def nan_images(self, index):
        item = real(self, index)
        return dict(item, query_img=torch.full_like(item["query_img"], float("nan")))

    monkeypatch.setattr(gc.RandomEpisodes, "__getitem__", nan_images)
    result = gc.check_training(model, micro.optimizers, CPU, batch=2, shots=1, size=size,
                               steps=2, amp=False)
    assert not result["passed"] and "non-finite loss" in result["error"]


def test_throughput_rows_and_table(micro) -> None:
    model, size = micro.model, micro.size
    c = gc.test_throughput(model, CPU, shots=1, size=size, batches=[1, 2], warmup=0, repeats=1,
                           amp=False)
    d = [gc.train_throughput(model, micro.optimizers, CPU, batch=2, shots=1, size=size,
                             warmup=1, repeats=1, amp=False)]
    assert [r["batch"] for r in c] == [1, 2] and all(r["episodes_per_s"] > 0 for r in c)
    assert d[0]["iterations_per_s"] > 0 and d[0]["episodes_per_s"] == 2 * d[0]["iterations_per_s"]
    report = {"results": {"c": c, "d": d}}
    assert [row[1] for row in table_rows(report)] == ["1-shot, batch 1", "1-shot, batch 2",
                                                     "1-shot, batch 2"]
    assert "episodes/s" in format_table(report) and "it/s" in format_table(report)
