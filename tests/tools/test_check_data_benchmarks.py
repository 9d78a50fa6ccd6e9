"""check_data.py on FSS-1000 (missing class folders, missing or corrupt masks, counts against
the 10 images of each HSNet class) and on the cross-domain targets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fssam.tools.data_check.check import CheckSettings, format_report, run_check
from fssam.tools.toy_fss import make_toy_fss


@pytest.fixture(scope="module")
def fss_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fss")
    make_toy_fss(root, splits=("test",), size=(32, 32))
    return root


def test_reports_missing_and_corrupt_files_and_counts(fss_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(fss_root, root)
    (root / "accordion" / "3.png").unlink()                  # missing mask
    (root / "andean_condor" / "2.png").write_bytes(b"not a png")     # corrupt mask
    (root / "anise" / "10.jpg").unlink()                     # a class with 9 images
    (root / "anise" / "10.png").unlink()
    report = run_check(CheckSettings(dataset="fss1000", root=str(root),
                                     cache_dir=str(tmp_path / "lists"), workers=1))
    kinds = {f["kind"]: f for f in report["findings"]}
    assert kinds["missing_label"]["examples"] == ["accordion/3.png"]
    assert kinds["unreadable_label"]["count"] == 1
    assert "andean_condor/2.png" in kinds["unreadable_label"]["examples"][0]
    assert "520 of the 520 train class folders missing" in kinds["missing_folder"]["examples"][0]
    assert report["lists"]["test_fold0"]["images"] == 2399
    wrong = [c for c in report["comparisons"] if not c["match"]]
    assert {(c["list"], c["row"]) for c in wrong} == {("test_fold0", "images"),
                                                      ("test_fold0", "class 766")}
    assert not report["ok"]
    text = format_report(report)
    assert "per class: 239 of 240 match" in text and "class 766" in text


def test_complete_test_classes_match(fss_root: Path, tmp_path: Path) -> None:
    report = run_check(CheckSettings(dataset="fss1000", root=str(fss_root),
                                     cache_dir=str(tmp_path / "lists"), workers=1))
    test = [c for c in report["comparisons"] if c["list"] == "test_fold0"]
    assert len(test) == 241 and all(c["match"] for c in test)


def test_crossdomain_targets(tmp_path: Path) -> None:
    from fssam.tools.toy_crossdomain import make_toy_crossdomain
    for name in ("deepglobe", "lung"):
        make_toy_crossdomain(tmp_path / name, name, per_class=3, size=(24, 24))
    deepglobe = run_check(CheckSettings(dataset="deepglobe", root=str(tmp_path / "deepglobe"),
                                        cache_dir=str(tmp_path / "lists"), workers=1))
    assert deepglobe["ok"] and deepglobe["reference_file"] is None  # no published count
    assert "none published" in format_report(deepglobe)
    (tmp_path / "lung" / "CXR_png" / "CHNCXR_0002_0.png").unlink()  # a mask without image
    lung = run_check(CheckSettings(dataset="lung", root=str(tmp_path / "lung"),
                                   cache_dir=str(tmp_path / "lists"), workers=1))
    kinds = {f["kind"]: f for f in lung["findings"]}
    assert kinds["missing_image"]["examples"] == ["CXR_png/CHNCXR_0002_0.png"]
    assert "CHNCXR_0002_0.png" in lung["lists"]["test_fold0"]["error"] and not lung["ok"]
