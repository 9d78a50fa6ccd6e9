"""Mamba's selective scan behind one function, without the ``mamba_ssm`` package.

``selective_scan`` takes the arguments of ``mamba_ssm``'s ``selective_scan_fn`` (as HMNet
calls it) and always computes in float32.
"""

from fssam.models.hmnet.scan.reference import selective_scan_naive

__all__ = ["selective_scan", "selective_scan_naive"]

selective_scan = selective_scan_naive
