"""The per-token selective scan against the release's scan cases (mamba_ssm's reference)."""

from __future__ import annotations

import torch

from fssam.models.hmnet.scan import selective_scan_naive


def test_naive_scan_matches_release_cases(release_name, release_case):
    kwargs, out, last = release_case(release_name)
    result = selective_scan_naive(**kwargs)
    y = result[0] if kwargs["return_last_state"] else result
    torch.testing.assert_close(y, out, atol=1e-4, rtol=1e-4)
    if last is not None:
        torch.testing.assert_close(result[1], last, atol=1e-4, rtol=1e-4)
