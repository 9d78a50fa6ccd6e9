"""``selective_scan``'s choice of implementation and its errors."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from fssam.models.hmnet import scan
from fssam.models.hmnet.scan import resolve_impl, selective_scan, selective_scan_naive
from fssam.models.hmnet.scan.mamba import selective_scan_mamba


def test_auto_is_the_torch_scan_on_cpu(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the interpreter never makes triton "auto"
    assert resolve_impl("auto", "cpu") == "torch"


def test_auto_on_cuda_prefers_mamba_ssm_then_triton(monkeypatch):
    monkeypatch.setattr(scan, "mamba_ssm_installed", lambda: True)
    assert resolve_impl("auto", "cuda") == "mamba_ssm"
    monkeypatch.setattr(scan, "mamba_ssm_installed", lambda: False)
    monkeypatch.setattr(scan, "_triton_usable", lambda device: True)
    assert resolve_impl("auto", "cuda") == "triton"
    monkeypatch.setattr(scan, "_triton_usable", lambda device: False)
    assert resolve_impl("auto", "cuda") == "torch"


@pytest.mark.parametrize("impl", ["torch", "naive"])
def test_explicit_impl_runs_it(impl, random_case):
    kwargs = random_case(seed=0, length=19)
    torch.testing.assert_close(selective_scan(**kwargs, impl=impl),
                               selective_scan_naive(**kwargs), atol=1e-4, rtol=1e-4)


def test_unknown_impl_is_named():
    with pytest.raises(ValueError, match="'cuda_fast'"):
        resolve_impl("cuda_fast", "cpu")


def test_mamba_ssm_on_cpu_is_refused_by_name(random_case):
    with pytest.raises(RuntimeError, match="'mamba_ssm' is not available on cpu"):
        selective_scan(**random_case(seed=0, length=4), impl="mamba_ssm")


def test_triton_on_cpu_without_interpreter_is_refused_by_name(monkeypatch, random_case):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="'triton' is not available on cpu"):
        selective_scan(**random_case(seed=0, length=4), impl="triton")


@pytest.mark.parametrize("bad,match", [
    ({"delta": torch.zeros(2, 4, 5)}, "delta"),
    ({"A": torch.zeros(3, 3)}, "A must be"),
    ({"B": torch.zeros(2, 3, 3, 7)}, "B must be"),
    ({"C": torch.zeros(2, 2, 3)}, "C must be"),
    ({"D": torch.zeros(5)}, "D must be"),
    ({"delta_bias": torch.zeros(2)}, "delta_bias must be"),
    ({"z": torch.zeros(2, 4, 6)}, "z "),
])
def test_mismatched_argument_is_named(bad, match, random_case):
    kwargs = {**random_case(seed=0, length=7), **bad}
    with pytest.raises(ValueError, match=match):
        selective_scan(**kwargs, impl="torch")


def test_mamba_ssm_wrapper_passes_float32_arguments_in_order(monkeypatch, random_case):
    """The wrapper's call of mamba_ssm.selective_scan_fn, with a stand-in module that
    computes the same function (the real one needs CUDA)."""
    calls = []

    def fake_selective_scan_fn(*args):
        calls.append([a.dtype for a in args if isinstance(a, torch.Tensor)])
        return selective_scan_naive(*args)

    interface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    interface.selective_scan_fn = fake_selective_scan_fn
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, interface.__name__, interface)
    kwargs = random_case(seed=2, length=12)
    half = {k: v.half() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    y, last = selective_scan_mamba(**half)
    assert calls == [[torch.float32] * 8]
    torch.testing.assert_close((y, last), selective_scan_naive(**half))
