"""The Triton kernel, run by Triton's interpreter on CPU, against the PyTorch scan.

``TRITON_INTERPRET`` is read when a kernel is decorated (at import), so the kernel runs in
a child process started with the variable set; the child writes its results to a file
and this process compares them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fssam.models.hmnet.scan import selective_scan_torch, torch_scan

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[3]
CHILD = """
import sys, torch
from fssam.models.hmnet.scan import selective_scan, torch_scan
cases = torch.load(sys.argv[1], weights_only=True)
out, budget = {}, torch_scan.BLOCK_ELEMENTS
for name, kwargs in cases.items():
    # gradient cases: blocks of 16 tokens, so the kernel's saved block states are used
    torch_scan.BLOCK_ELEMENTS = 1 if name.startswith("grad") else budget
    if name.startswith("grad"):
        leaves = {k: v.clone().requires_grad_(True) for k, v in kwargs.items()
                  if isinstance(v, torch.Tensor)}
        y, last = selective_scan(**{**kwargs, **leaves}, impl="triton")
        (y.sum() + (last * last).sum()).backward()
        out[name] = {"y": y.detach(), "last": last.detach(),
                     **{"grad_" + k: v.grad for k, v in leaves.items()}}
    else:
        y, last = selective_scan(**kwargs, impl="triton")
        out[name] = {"y": y, "last": last}
torch.save(out, sys.argv[2])
"""


def run_interpreted(cases: dict, tmp_path: Path) -> dict:
    torch.save(cases, tmp_path / "cases.pt")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "cases.pt"),
                    str(tmp_path / "out.pt")], check=True, env=env, cwd=ROOT, timeout=300)
    return torch.load(tmp_path / "out.pt", weights_only=True)


def test_interpreted_kernel_matches_torch_scan(tmp_path, random_case, release_case,
                                               monkeypatch):
    cases = {f"release_{name}": {**release_case(name)[0], "return_last_state": True}
             for name in ("grouped_bias_softplus_D_last", "shared_BC_z", "constant_BC")}
    for bc in ("grouped", "shared", "constant"):
        cases[f"random_{bc}"] = random_case(seed=1, bc=bc, length=24)
    underflow = random_case(seed=5, length=40, state=4)
    underflow["A"] = torch.full_like(underflow["A"], -60.0)  # decays underflow to 0
    cases["random_underflow"] = underflow
    cases["random_plain"] = random_case(seed=2, length=33, with_d=False, with_z=False,
                                        with_bias=False, softplus=False)
    cases["grad_grouped"] = random_case(seed=3, length=37)
    cases["grad_constant"] = random_case(seed=4, bc="constant", length=21)
    got = run_interpreted(cases, tmp_path)
    for name, kwargs in cases.items():
        if name.startswith("grad"):
            monkeypatch.setattr(torch_scan, "BLOCK_ELEMENTS", 1)
            leaves = {k: v.clone().requires_grad_(True) for k, v in kwargs.items()
                      if isinstance(v, torch.Tensor)}
            y, last = selective_scan_torch(**{**kwargs, **leaves})
            (y.sum() + (last * last).sum()).backward()
            for k, v in leaves.items():
                torch.testing.assert_close(got[name]["grad_" + k], v.grad, atol=1e-4,
                                           rtol=1e-4, msg=f"{name} grad {k}")
        else:
            y, last = selective_scan_torch(**kwargs)
        torch.testing.assert_close(got[name]["y"], y, atol=1e-4, rtol=1e-4, msg=name)
        torch.testing.assert_close(got[name]["last"], last, atol=1e-4, rtol=1e-4, msg=name)
