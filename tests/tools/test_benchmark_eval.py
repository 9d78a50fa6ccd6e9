"""scripts/benchmark_eval.py on the micro SAM 2 config and a tiny DINOv2 (CPU)."""

import json
from pathlib import Path

import pytest

from ..conftest import SCRIPTS
from fssam.tools import benchmark_eval as script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = SCRIPTS / "benchmark_eval.py"
MICRO = ROOT / "tests" / "fixtures" / "parity" / "sam2_micro_v1.yaml"
# the model as Hydra overrides: the micro SAM 2 at 128 and a one-block DINOv2 at 56
TINY = ["sam2=micro", f"sam2.config={MICRO}", "sam2.image_size=128", "model=fssam_tiny_dino",
        "model.dino_kwargs.num_heads=1"]


def test_rows_table_and_json(tmp_path, capsys, one_thread):
    bench = script
    out = tmp_path / "bench.json"
    assert bench.main(["--device", "cpu", *TINY, "--episodes", "4",
                       "--shots", "1", "2", "--images-per-class", "4",
                       "--json", str(out)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert [(r["shot"], r["cache"]) for r in rows] == [
        (shot, mode) for shot in (1, 2) for mode in ("off", "cold", "warm")]
    for row in rows:
        assert row["episodes_per_s"] > 0 and row["episodes"] == 4
        assert f"{row['episodes_per_s']:.3f}" in table
        if row["cache"] == "off":
            assert row["hit_rate"] is None and row["speedup"] == 1.0
        elif row["cache"] == "warm":
            assert row["hit_rate"] == 1.0 and row["cache_gb"] > 0
        else:  # 4 images serve 4 episodes: the cold pass already reuses some
            assert 0 < row["hit_rate"] < 1


def test_arguments_are_checked():
    bench = script
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cpu", "--bf16"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--shots", "5", "--images-per-class", "5"])
