"""scripts/benchmark_forward.py on the micro SAM 2 config and a tiny DINOv2 (CPU)."""

import json
from pathlib import Path

import pytest
import torch

from ..conftest import SCRIPTS
from fssam.tools import benchmark_forward as script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = SCRIPTS / "benchmark_forward.py"
MICRO = ROOT / "tests" / "fixtures" / "parity" / "sam2_micro_v1.yaml"
# the model as Hydra overrides: the micro SAM 2 at 128 and a one-block DINOv2 at 56
TINY = ["sam2=micro", f"sam2.config={MICRO}", "sam2.image_size=128", "model=fssam_tiny_dino",
        "model.dino_kwargs.num_heads=1"]


def test_benchmark_table_and_json(tmp_path, capsys):
    bench = script
    out = tmp_path / "bench.json"
    assert bench.main(["--device", "cpu", *TINY, "--warmup", "0",
                       "--repeats", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["fssam", "fssam, given priors", "ppg", "dinov2 features"]
    for name, row in results.items():
        assert name in table
        assert row["mean_ms"] > 0 and row["min_ms"] <= row["mean_ms"]
        assert row["peak_mib"] is None  # CPU run; strict JSON (no NaN)
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


def test_measure_calls_warmup_plus_repeats():
    bench = script
    calls = []
    row = bench.measure(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=3)
    assert len(calls) == 5 and row["std_ms"] >= 0


def test_bf16_needs_cuda():
    with pytest.raises(SystemExit):
        script.parse_args(["--device", "cpu", "--bf16"])
