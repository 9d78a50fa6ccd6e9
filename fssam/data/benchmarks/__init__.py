"""The benchmarks, one module each (README: Adding a benchmark).

``get(name)`` returns a benchmark's ``Benchmark`` description; ``NAMES`` lists them.
"""

from __future__ import annotations

from fssam.data.benchmarks import coco, deepglobe, fss1000, isic, lung, lvis, pascal
from fssam.data.benchmarks.base import BINARY, INDEX, TEST, TRAIN, VAL, Benchmark

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    pascal.BENCHMARK, coco.BENCHMARK, fss1000.BENCHMARK, lvis.BENCHMARK, deepglobe.BENCHMARK,
    isic.BENCHMARK, lung.BENCHMARK)}
NAMES = tuple(BENCHMARKS)


def get(name: str) -> Benchmark:
    """The benchmark ``name``; a ValueError lists the known ones."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown dataset {name!r} (expected one of {', '.join(NAMES)})")
    return BENCHMARKS[name]


__all__ = ["BENCHMARKS", "BINARY", "INDEX", "NAMES", "TEST", "TRAIN", "VAL",
           "Benchmark", "get"]
