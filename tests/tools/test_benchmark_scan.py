"""scripts/benchmark_scan.py at tiny sizes (CPU)."""

import json

import pytest

from ..conftest import SCRIPTS
from fssam.tools import benchmark_scan as script

SCRIPT = SCRIPTS / "benchmark_scan.py"
TINY = ["--device", "cpu", "--channels", "8", "--groups", "2", "--state", "4", "--warmup", "0",
        "--repeats", "1"]


def test_table_and_json_rows(tmp_path, capsys):
    out = tmp_path / "scan.json"
    assert script.main([*TINY, "--batch", "1", "2", "--length", "40",
                                     "--naive-prefix", "16", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [(r["impl"], r["batch"]) for r in rows] == [
        ("torch", 1), ("naive", 1), ("torch", 2), ("naive", 2)]
    for row in rows:
        assert row["length"] == 40 and row["seconds"] > 0 and row["device"] == "cpu"
        assert row["extrapolated"] == (row["impl"] == "naive")
        assert row["timed_length"] == (16 if row["impl"] == "naive" else 40)
    assert "scaled from 16 tokens" in table and "torch" in table


def test_whole_naive_run_and_backward(tmp_path):
    out = tmp_path / "scan.json"
    script.main([*TINY, "--batch", "1", "--length", "20", "--naive-prefix", "0",
                              "--impls", "naive", "--backward", "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["impl"] == "naive" and not row["extrapolated"] and row["backward"]


def test_unavailable_impl_is_refused(capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--device", "cpu", "--impls", "mamba_ssm"])
    assert "mamba_ssm" in capsys.readouterr().err
