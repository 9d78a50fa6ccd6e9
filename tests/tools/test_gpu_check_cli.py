"""scripts/gpu_check.py without CUDA: it says so, runs every check on the CPU and exits 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ..conftest import SCRIPTS
from fssam.tools import gpu_check_cli as script

SCRIPT = SCRIPTS / "gpu_check.py"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_cpu_path_runs_every_check(tmp_path: Path, capsys, one_thread) -> None:
    code = script.main([
        "--preset", "micro", "--steps", "1", "--test-batches", "1", "2", "--train-batches",
        "2", "--warmup", "0", "--repeats", "1", "--launch-iterations", "1",
        "--launch-episodes", "2", "--workdir", str(tmp_path), "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "no CUDA device" in out and "no CUDA: CPU results only" in out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    results = report["results"]
    assert not report["cuda"] and report["passed"] == {"a": True, "b": True, "e": True}
    assert [a["shots"] for a in results["a"]] == [1, 5]
    assert [(c["shots"], c["batch"]) for c in results["c"]] == [(1, 1), (1, 2), (5, 1), (5, 2)]
    assert [d["batch"] for d in results["d"]] == [2]
    e = results["e"]
    assert e["backend"] == "gloo" and e["losses"] and e["scores"]["miou"] >= 0
    assert Path(e["run_dir"], "last.pt").is_file()
    for check in ("(a) bf16 vs fp32", "(b) gradients", "(c) test", "(d) train",
                  "(e) torchrun train.py", "(e) torchrun test.py"):
        assert check in out
    assert "FAIL" not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(capsys) -> None:
    assert script.main(["--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
