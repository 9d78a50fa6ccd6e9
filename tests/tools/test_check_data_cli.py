"""scripts/check_data.py: exit status 0 / 1 / 2, the JSON report, and the synthetic dataset
explained rather than crashed on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fssam.tools.toy import make_toy_pascal

from ..conftest import SCRIPTS
from fssam.tools.data_check import cli as script

SCRIPT = SCRIPTS / "check_data.py"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check_toy") / "toy"
    make_toy_pascal(root, num_images=40, workers=1)
    return root


def test_toy_dataset_is_explained(toy: Path, tmp_path: Path, capsys) -> None:
    """The README's command on the synthetic data: exit 1, every difference explained."""
    out = tmp_path / "report.json"
    code = script.main(["--dataset", "pascal", "--root", str(toy), "--cache-dir",
                                     str(tmp_path), "--json", str(out)])
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 1 and report["synthetic"] and not report["ok"]
    assert "synthetic dataset of scripts/make_toy_dataset.py" in text
    assert "names real VOC2012/SBD images" in text and "--train-list all" in text
    assert "not built" in text and text.count("\nfold ") == 4
    assert report["lists"]["train_fold0"]["error"].startswith("image not found")
    assert report["lists"]["val_fold0"]["images"] > 0


def test_exit_zero_when_counts_match(toy: Path, tmp_path: Path, capsys) -> None:
    first = tmp_path / "first.json"
    args = ["--dataset", "pascal", "--root", str(toy), "--cache-dir", str(tmp_path),
            "--train-list", "all", "--folds", "0"]
    assert script.main(args + ["--json", str(first)]) == 1
    ours = {k: v for k, v in json.loads(first.read_text())["lists"].items()}
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(ours))
    capsys.readouterr()
    assert script.main(args + ["--reference", str(reference)]) == 0
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--dataset", "voc", "--root", "x"], "invalid choice: 'voc'"),
    (["--dataset", "pascal"], "the following arguments are required: --root"),
    (["--dataset", "pascal", "--root", "TOY", "--folds", "4"],
     "unknown fold 4 for pascal (its folds are 0..3)"),
    (["--dataset", "pascal", "--root", "TOY", "--folds", "10"], "invalid choice: 10"),
    (["--dataset", "pascal", "--root", "NOWHERE"], "dataset root not found"),
    (["--dataset", "coco", "--root", "TOY", "--train-list", "authors"], "ships for pascal only"),
    (["--dataset", "pascal", "--root", "TOY", "--reference", "NOWHERE"],
     "reference counts not found"),
])
def test_bad_arguments_exit_2(args: list[str], message: str, toy: Path, tmp_path: Path,
                              capsys) -> None:
    args = [str(toy) if a == "TOY" else str(tmp_path / "nowhere") if a == "NOWHERE" else a
            for a in args]
    try:
        code = script.main(args)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err
