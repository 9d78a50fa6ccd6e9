"""scripts/episodes.py: the CSV holds exactly the episodes test.py scores."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fssam.data import build_dataset
from fssam.tools.toy import make_toy_pascal

from ..conftest import SCRIPTS
from fssam.tools import episodes as script

SCRIPT = SCRIPTS / "episodes.py"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("episodes_toy") / "toy"
    make_toy_pascal(root, num_images=100, workers=1)
    return root


def overrides(toy: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["dataset=toy", f"dataset.root={toy}", f"dataset.cache_dir={tmp_path / 'lists'}",
            "sam2=micro", "episodes=15", "shot=2", *extra]


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("protocol, seeds", [("release", [321]), ("seeds", [7, 8])])
def test_rows_are_the_scored_episodes(toy, tmp_path, capsys, protocol, seeds) -> None:
    out = tmp_path / "e.csv"
    code = script.main(["--out", str(out), "--protocol", protocol,
                                     *overrides(toy, tmp_path, "seeds=[7,8]")])
    assert code == 0 and "episodes written" in capsys.readouterr().out
    rows = read(out)
    assert len(rows) == 15 * len(seeds)
    for seed in seeds:
        dataset = build_dataset(dataset="pascal", root=str(toy), fold=0, shot=2, mode="val",
                                image_size=64, num_episodes=15, seed=seed, train_list="all",
                                cache_dir=str(tmp_path / "lists"), protocol=protocol,
                                release_workers=32)
        names = [Path(r.image).stem for r in dataset.records]
        mine = [r for r in rows if int(r["seed"]) == seed]
        assert [(r["protocol"], int(r["index"])) for r in mine] == [(protocol, i)
                                                                   for i in range(15)]
        assert [(r["query"], int(r["class"]), r["supports"].split()) for r in mine] == [
            (names[e.query], e.class_id, [names[j] for j in e.supports])
            for e in dataset.episodes]


def test_bad_settings_exit_2(toy, tmp_path, capsys) -> None:
    code = script.main(["--out", str(tmp_path / "e.csv"),
                                     *overrides(toy, tmp_path, "dataset.val_list=missing.txt")])
    assert code == 2 and "missing.txt" in capsys.readouterr().err
    assert not (tmp_path / "e.csv").exists()
