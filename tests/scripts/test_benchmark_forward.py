"""scripts/benchmark_forward.py on the micro SAM 2 config and a tiny DINOv2 (CPU)."""

import json
from pathlib import Path

import pytest
import torch

from ..conftest import SCRIPTS, load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = SCRIPTS / "benchmark_forward.py"
MICRO = ROOT / "tests" / "fixtures" / "parity" / "sam2_micro_v1.yaml"


def test_benchmark_table_and_json(tmp_path, capsys):
    bench = load_script(SCRIPT)
    out = tmp_path / "bench.json"
    assert bench.main(["--device", "cpu", "--sam2-config", str(MICRO), "--image-size", "128",
                       "--dino-input-size", "56", "--dino-kwargs",
                       '{"embed_dim": 32, "depth": 1, "num_heads": 1}', "--warmup", "0",
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
    bench = load_script(SCRIPT)
    calls = []
    row = bench.measure(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=3)
    assert len(calls) == 5 and row["std_ms"] >= 0


def test_bf16_needs_cuda():
    with pytest.raises(SystemExit):
        load_script(SCRIPT).parse_args(["--device", "cpu", "--bf16"])
