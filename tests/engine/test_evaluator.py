"""Tests of fssam.engine.evaluator: sums, ignore pixels, missing classes, all-reduce."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from fssam.engine.evaluator import SegmentationEvaluator, logits_to_prediction
from fssam.contract import positive_foreground, sigmoid_foreground

sys.path.insert(0, str(Path(__file__).parent))
import evaluator_dist_worker as worker  # noqa: E402


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def _b(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def _hand_episodes() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Three episodes whose sums are worked out in ``test_hand_computed_case``."""
    e1 = (
        _b([[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]]),
        _t([[0, 0, 1, 1], [0, 255, 1, 1], [0, 0, 255, 1], [0, 0, 0, 0]]),
        3,
    )
    e2 = (_b([[1, 0, 0], [1, 1, 1]]), _t([[1, 1, 0], [1, 255, 0]]), 3)
    e3 = (_b([[0, 0], [0, 0]]), _t([[1, 0], [0, 0]]), 7)
    return [e1, e2, e3]


def test_hand_computed_case() -> None:
    # Episode 1 (class 3), 4x4, two ignore pixels at (1,1) and (2,2), 14 valid pixels.
    #   target fg = {(0,2),(0,3),(1,2),(1,3),(2,3)} -> 5
    #   pred fg on valid pixels = {(0,1),(0,2),(1,2),(1,3),(2,3),(3,0)} -> 6
    #   ((1,1) and (2,2) are predicted fg but ignored)
    #   fg inter = {(0,2),(1,2),(1,3),(2,3)} = 4, fg union = 5 + 6 - 4 = 7
    #   bg inter = valid pixels in neither = 14 - 7 = 7, bg union = 9 + 8 - 7 = 10
    # Episode 2 (class 3), 2x3, ignore at (1,1), 5 valid pixels.
    #   target fg = {(0,0),(0,1),(1,0)} = 3, pred fg = {(0,0),(1,0),(1,2)} = 3
    #   fg inter = 2, fg union = 4; bg inter = {(0,2)} = 1, bg union = 2 + 2 - 1 = 3
    # Episode 3 (class 7), 2x2, nothing predicted, target fg = {(0,0)}.
    #   fg inter = 0, fg union = 1; bg inter = 3, bg union = 4
    # IoU(3) = (4 + 2) / (7 + 4) = 6/11 = 54.5454...%, IoU(7) = 0/1 = 0%
    # mIoU = (54.5454... + 0 + 0) / 3 = 18.1818...% (class 9 has no episode: it counts as
    # 0, as in the releases)
    # FG IoU = (4 + 2 + 0) / (7 + 4 + 1) = 6/12 = 50%
    # BG IoU = (7 + 1 + 3) / (10 + 3 + 4) = 11/17 = 64.7059%
    # FB-IoU = (50 + 64.7059) / 2 = 57.3529%
    ev = SegmentationEvaluator([3, 7, 9])
    for pred, target, cid in _hand_episodes():
        ev.update(pred, target, cid)
    out = ev.compute()
    assert out["class_iou"] == pytest.approx({3: 600 / 11, 7: 0.0})
    assert out["miou"] == pytest.approx(200 / 11)
    assert out["fg_iou"] == pytest.approx(50.0)
    assert out["bg_iou"] == pytest.approx(1100 / 17)
    assert out["fbiou"] == pytest.approx((50.0 + 1100 / 17) / 2)
    assert out["missing_classes"] == [9]
    assert out["num_episodes"] == 3
    assert ev.class_sums.dtype == torch.int64
    assert ev.class_sums.tolist() == [[6, 0, 0], [11, 1, 0], [2, 1, 0]]
    assert ev.fb_sums.tolist() == [11, 17, 6, 12]


def test_ignore_pixels_do_not_count() -> None:
    target = _t([[1, 1, 255], [0, 0, 255]])
    pred_a = _b([[1, 0, 0], [0, 1, 0]])
    pred_b = _b([[1, 0, 1], [0, 1, 1]])  # differs only on ignore pixels
    results = []
    for pred in (pred_a, pred_b):
        ev = SegmentationEvaluator([1])
        ev.update(pred, target, 1)
        results.append(ev.compute())
    assert results[0] == results[1]
    # fg: inter 1, union 3; bg: inter 0... pred bg valid {(0,1),(1,0)}, target bg {(1,0),(1,1)}
    assert results[0]["class_iou"][1] == pytest.approx(100 / 3)
    assert results[0]["bg_iou"] == pytest.approx(100 / 3)


def test_all_ignore_and_perfect_prediction() -> None:
    ev = SegmentationEvaluator([2])
    ev.update(_b([[1, 1]]), _t([[255, 255]]), 2)
    assert ev.compute()["class_iou"][2] == 100.0
    ev.update(_b([[1, 0]]), _t([[1, 0]]), 2)
    out = ev.compute()
    assert out["miou"] == 100.0 and out["fbiou"] == 100.0


def test_no_episodes_gives_nan_and_all_missing() -> None:
    out = SegmentationEvaluator([1, 2]).compute()
    assert math.isnan(out["miou"]) and math.isnan(out["fbiou"])
    assert out["missing_classes"] == [1, 2] and out["class_iou"] == {}


def test_compute_is_idempotent_and_reset_clears() -> None:
    ev = SegmentationEvaluator([3, 7])
    for pred, target, cid in _hand_episodes():
        ev.update(pred, target, cid)
    assert ev.compute() == ev.compute()
    ev.reset()
    assert ev.compute()["num_episodes"] == 0


def test_bad_inputs() -> None:
    ev = SegmentationEvaluator([1])
    with pytest.raises(ValueError, match="class 4"):
        ev.update(_b([[1]]), _t([[1]]), 4)
    with pytest.raises(ValueError, match="shape"):
        ev.update(_b([[1, 0]]), _t([[1]]), 1)
    with pytest.raises(ValueError, match="duplicates"):
        SegmentationEvaluator([1, 1])


def test_logits_to_prediction_uses_align_corners() -> None:
    logits = torch.tensor([[-3.0, 1.0], [-3.0, 1.0]])
    pred = logits_to_prediction(logits, (2, 4), sigmoid_foreground)
    # align_corners=True samples -3, -1.67, -0.33, 1 -> only the last column >= 0
    # (align_corners=False would give -3, -2, 0, 1 and mark the third column too).
    assert pred.dtype == torch.bool
    assert pred.tolist() == [[False, False, False, True]] * 2
    with pytest.raises(ValueError):
        logits_to_prediction(torch.zeros(1, 3, 3), (5, 7), sigmoid_foreground)


def test_foreground_rules_differ_only_on_ties() -> None:
    zeros = torch.zeros(3, 3)
    assert logits_to_prediction(zeros, (5, 7), sigmoid_foreground).all()  # sigmoid(0) = 0.5
    assert not logits_to_prediction(zeros, (5, 7), positive_foreground).any()  # tie -> bg
    logits = torch.tensor([[-2.0, 1e-3], [3.0, -1e-3]])
    assert torch.equal(sigmoid_foreground(logits), positive_foreground(logits))


def test_two_process_all_reduce_matches_single_process(tmp_path: Path) -> None:
    num_episodes = 13
    single = SegmentationEvaluator(worker.CLASS_IDS)
    for pred, target, cid in worker.make_episodes(num_episodes):
        single.update(pred, target, cid)
    expected = json.loads(json.dumps(single.compute()))
    assert expected["missing_classes"] == [5]

    args = (2, str(tmp_path / "init"), str(tmp_path), num_episodes)
    mp.spawn(worker.run, args=args, nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["local_episodes"] for r in results] == [7, 6]
    for r in results:
        assert r["first"] == expected
        assert r["second"] == expected
