"""The synthetic FSS-1000 (fssam.tools.toy_fss) and its make_toy_dataset.py options."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.data.benchmarks import fss1000
from fssam.tools import make_toy_dataset
from fssam.tools.toy_fss import make_toy_fss


def test_layout_masks_and_determinism(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        make_toy_fss(root, splits=("val",), classes=2, size=(32, 32), seed=3)
    names = fss1000.class_names("val")[:2]
    assert sorted(p.name for p in a.iterdir()) == sorted([*names, "toy_meta.json"])
    files = sorted(p.name for p in (a / names[0]).iterdir())
    assert files == sorted([f"{n}.jpg" for n in range(1, 11)] + [f"{n}.png" for n in range(1, 11)])
    for path in (a / names[0]).iterdir():
        assert path.read_bytes() == (b / names[0] / path.name).read_bytes()
    mask = cv2.imread(str(a / names[0] / "1.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (32, 32, 3) and set(np.unique(mask)) == {0, 127, 128, 255}


def test_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a toy dataset"):
        make_toy_fss(tmp_path, classes=1)


def test_cli_layout_and_splits() -> None:
    args = make_toy_dataset.parse_args(["--root", "x", "--layout", "fss1000", "--splits",
                                        "train", "val"])
    assert (args.layout, args.splits) == ("fss1000", ["train", "val"])
