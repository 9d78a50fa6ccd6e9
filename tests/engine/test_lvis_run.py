"""LVIS-92i end to end on its synthetic copy (LVIS v1 json written, then prepared by
scripts/prepare_lvis.py's code): test.py's rows on a fold (Matcher's episodes, seed 0,
scored at 518 x 518) and check_data.py naming a missing and a corrupt mask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fssam.data.folds import fold_classes
from fssam.tools.data_check.check import CheckSettings, format_report, run_check
from fssam.tools.toy_lvis import make_toy_lvis

from .conftest import launch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lvis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lvis")
    make_toy_lvis(root, size=(32, 48), workers=1)
    return root


def test_cli_scores_matchers_episodes(lvis_root: Path, tmp_path: Path) -> None:
    args = ["debug=cpu", "dataset=lvis", "experiment=lvis_fssam", "split=4", "shot=1",
            f"dataset.root={lvis_root}", f"dataset.cache_dir={tmp_path / 'lists'}",
            f"exp_dir={tmp_path}", "episodes=6", "seeds=[321]", "checkpoint_format=none",
            "trainer.progress=false", "trainer.num_threads=1", "sam2.image_size=64"]
    result = launch(REPO / "test.py", args, 1, cwd=REPO, timeout=600)
    results = json.loads((tmp_path / "lvis" / "FSSAM_tiny_dino" / "split4" / "1shot" / "micro"
                          / "results.json").read_text())
    release = results["release"]
    assert (release["seed"], release["rule"], release["workers"], release["num_episodes"]) == (
        0, "matcher", None, 6)
    fold = fold_classes("lvis", "val", 4, root=str(lvis_root), shot=1)
    assert len(fold) == 2  # the toy's 29 categories eligible at one shot: 2 per fold
    # six episodes cycle the fold's two categories: both are scored
    assert set(release["class_iou"]) == {str(c) for c in fold}
    assert "release (Matcher's, seed 0)" in result.stderr + result.stdout


def test_check_data_names_missing_and_corrupt_masks(lvis_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(lvis_root, root)
    lines = (root / "lvis92i_val.txt").read_text().split("\n")
    missing, corrupt = lines[0].split()[1], lines[1].split()[1]
    (root / missing).unlink()
    (root / corrupt).write_bytes(b"not a png")
    report = run_check(CheckSettings(dataset="lvis", root=str(root), folds=(0, 1), shot=5,
                                     cache_dir=str(tmp_path / "cache"), workers=1))
    kinds = {f["kind"]: f for f in report["findings"]}
    assert kinds["missing_label"]["examples"] == [missing]
    assert corrupt in kinds["unreadable_label"]["examples"][0]
    assert report["shot"] == 5 and report["reference_file"] is None and not report["ok"]
    assert set(report["lists"]) == {"train_fold0", "val_fold0", "train_fold1", "val_fold1"}
    assert "FAIL" in format_report(report)


def test_check_data_passes_the_prepared_copy(lvis_root: Path, tmp_path: Path) -> None:
    report = run_check(CheckSettings(dataset="lvis", root=str(lvis_root), folds=(9,),
                                     cache_dir=str(tmp_path / "cache"), workers=1))
    assert report["ok"], format_report(report)
    val = report["lists"]["val_fold9"]
    assert len(val["per_class"]) == 2 and all(n > 1 for n in val["per_class"].values())
