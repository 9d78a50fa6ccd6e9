"""The per-token selective scan against the release's scan cases (mamba_ssm's reference)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fssam.models.hmnet.scan import selective_scan_naive

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "parity_hmnet"
CASES = torch.load(FIXTURES / "scan_cases.pt", weights_only=True)
SCAN_NAMES = sorted({k.split(".")[0] for k in CASES if k != "meta" and f"{k.split('.')[0]}.h"
                     not in CASES})


def scan_case(name: str) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """Arguments, expected output and expected last state (or None) of one case."""
    kwargs = {k.split(".", 1)[1]: v for k, v in CASES.items() if k.startswith(name + ".")}
    out, last = kwargs.pop("out"), kwargs.pop("last_state", None)
    kwargs = {k: v.item() if v.dim() == 0 else v for k, v in kwargs.items()}
    return kwargs, out, last


@pytest.mark.parametrize("name", SCAN_NAMES)
def test_naive_scan_matches_release_cases(name):
    kwargs, out, last = scan_case(name)
    result = selective_scan_naive(**kwargs)
    y = result[0] if kwargs["return_last_state"] else result
    torch.testing.assert_close(y, out, atol=1e-4, rtol=1e-4)
    if last is not None:
        torch.testing.assert_close(result[1], last, atol=1e-4, rtol=1e-4)
