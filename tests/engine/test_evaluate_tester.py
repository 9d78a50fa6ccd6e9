"""test.py and fssam.engine.tester: results.json's two rows (the release protocol, our seeds),
checkpoints, config checks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fssam.engine.config import compose_config
from fssam.engine.tester import (
    build_test_model,
    evaluate_protocols,
    format_results,
    validate_test_config,
    write_results,
)
from fssam.engine.config import ConfigError
from fssam.utils.dist import DistInfo

REPO = Path(__file__).resolve().parents[2]
SINGLE = DistInfo(0, 1, 0, torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_thread")


def overrides(toy_root: Path, exp_dir: Path, *extra: str) -> list[str]:
    return [
        "debug=cpu",
        f"dataset.root={toy_root}",
        f"dataset.cache_dir={exp_dir / 'lists'}",
        f"exp_dir={exp_dir}",
        "episodes=6",
        "seeds=[321,123]",
        "trainer.progress=false",
        "trainer.num_threads=1",
        *extra,
    ]


def test_cli_writes_the_release_row_and_mean_and_std_over_seeds(toy_root: Path,
                                                                 tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = overrides(toy_root, tmp_path, "checkpoint_format=none", "vis=2")
    result = subprocess.run(
        [sys.executable, str(REPO / "test.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "toy" / "FSSAM_tiny_dino" / "split0" / "1shot" / "micro"
    results = json.loads((run_dir / "results.json").read_text())
    assert [row["seed"] for row in results["per_seed"]] == [321, 123]
    assert all(row["num_episodes"] == 6 for row in results["per_seed"])
    mious = [row["miou"] for row in results["per_seed"]]
    assert mious[0] != mious[1]
    summary = results["summary"]
    assert summary["seeds"] == [321, 123]
    assert summary["miou"]["mean"] == pytest.approx(sum(mious) / 2)
    assert summary["miou"]["std"] == pytest.approx(abs(mious[0] - mious[1]) / 2)
    assert set(summary["class_iou"]) <= {"1", "2", "3", "4", "5"}
    release = results["release"]
    assert (release["seed"], release["workers"], release["num_episodes"]) == (321, 32, 6)
    assert results["protocols"] == ["release", "seeds"]
    assert "best" not in json.dumps(results)
    assert "mean+-std" in result.stderr and "release (seed 321, 32 workers)" in result.stderr
    assert (run_dir / "test.log").is_file()
    assert len(list((run_dir / "vis").glob("*.png"))) == 2


def test_cached_and_prior_only_runs(toy_root: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        "test", overrides(toy_root, tmp_path, "checkpoint_format=none", "prior_cache=true")
    )
    validate_test_config(cfg)
    torch.manual_seed(0)
    model = build_test_model(cfg)
    first = evaluate_protocols(cfg, model, SINGLE)
    assert len(list(Path(cfg.prior_cache_dir).iterdir())) == 3  # the release's, two seeds
    second = evaluate_protocols(cfg, model, SINGLE)
    assert first["per_seed"] == second["per_seed"] and first["release"] == second["release"]
    cfg.prior_only = True
    prior = evaluate_protocols(cfg, model, SINGLE)
    assert prior["prior_only"] and prior["per_seed"] != first["per_seed"]
    path = write_results({"miou": math.nan, "class_iou": {1: 2.0}}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"miou": None, "class_iou": {"1": 2.0}}


def test_checkpoints_load_strictly(toy_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    trained = build_test_model(
        compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none"))
    )
    state = {k: v + 0.5 for k, v in trained.trainable_state_dict().items()}
    torch.save({"model": state, "epoch": 1}, tmp_path / "best.pt")
    cfg = compose_config(
        "test", overrides(toy_root, tmp_path, f"checkpoint={tmp_path / 'best.pt'}")
    )
    loaded = build_test_model(cfg)
    for key, value in loaded.trainable_state_dict().items():
        assert torch.equal(value, state[key]), key
    frozen = trained.state_dict()  # random parts: seeded as training seeds them
    for key, value in loaded.state_dict().items():
        assert key in state or torch.equal(value, frozen[key]), key
    dropped = sorted(state)[0]
    torch.save({"model": {k: v for k, v in state.items() if k != dropped}}, tmp_path / "bad.pt")
    with pytest.raises(KeyError, match=dropped.replace(".", r"\.")):
        build_test_model(
            compose_config(
                "test", overrides(toy_root, tmp_path, f"checkpoint={tmp_path / 'bad.pt'}")
            )
        )
    release = {f"module.sam2.{k}": v + 1.0 for k, v in trained.sam2.state_dict().items()}
    torch.save({"state_dict": release}, tmp_path / "release.pth")
    cfg = compose_config(
        "test",
        overrides(
            toy_root,
            tmp_path,
            "checkpoint_format=release",
            f"checkpoint={tmp_path / 'release.pth'}",
        ),
    )
    released = build_test_model(cfg)
    for key, value in released.sam2.state_dict().items():
        assert torch.equal(value, release[f"module.sam2.{key}"]), key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("episodes=0", "episodes=0"),
        ("seeds=[]", "seeds="),
        ("seeds=[5,5]", "repeated"),
        ("protocols=[release,release]", "protocols="),
        ("release_seed=-1", "release_seed=-1"),
        ("model.release.workers=-2", "model.release.workers=-2"),
        ("batch_size=0", "batch_size=0"),
        ("shot=0", "shot=0"),
    ],
)
def test_bad_settings_are_named(
    toy_root: Path, tmp_path: Path, override: str, message: str
) -> None:
    cfg = compose_config("test", overrides(toy_root, tmp_path, override))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_test_config(cfg)


@pytest.mark.parametrize(("override", "key", "value"), [
    ("seeds=7", "seeds", "7"),
    ("protocols=[theirs]", "protocols", "theirs"),
    ("checkpoint_format=theirs", "checkpoint_format", "theirs"),
    ("prior_cache=maybe", "prior_cache", "maybe"),
])
def test_the_schema_refuses_wrong_test_values(toy_root: Path, tmp_path: Path, override: str,
                                              key: str, value: str) -> None:
    with pytest.raises(Exception) as error:
        compose_config("test", overrides(toy_root, tmp_path, override))
    assert key in str(error.value) and value in str(error.value)


@pytest.mark.parametrize("dataset", ["pascal", "coco", "toy"])
@pytest.mark.parametrize("sam2", ["tiny", "small", "base_plus", "large", "micro"])
def test_every_dataset_and_sam2_composes(dataset: str, sam2: str) -> None:
    cfg = compose_config("test", [f"dataset={dataset}", f"sam2={sam2}", "split=3", "shot=5"])
    validate_test_config(cfg)
    assert cfg.checkpoint == f"exp/{dataset}/FSSAM/split3/5shot/{sam2}/best.pt"
    assert cfg.results_file == f"exp/{dataset}/FSSAM/split3/5shot/{sam2}/results.json"


@pytest.mark.parametrize("dataset", ["pascal", "coco"])
def test_experiment_recipes_compose(dataset: str) -> None:
    cfg = compose_config("test", [f"dataset={dataset}", f"experiment={dataset}_fssam"])
    validate_test_config(cfg)
    with pytest.raises(ConfigError, match="experiment"):
        other = "coco" if dataset == "pascal" else "pascal"
        validate_test_config(
            compose_config("test", [f"dataset={other}", f"experiment={dataset}_fssam"])
        )


def test_protocols_select_the_rows(toy_root: Path, tmp_path: Path) -> None:
    cfg = compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none",
                                           "protocols=[release]", "seeds=[]"))
    validate_test_config(cfg)
    model = build_test_model(cfg)
    only_release = evaluate_protocols(cfg, model, SINGLE)
    assert only_release["per_seed"] == [] and only_release["summary"] is None
    assert only_release["release"]["num_episodes"] == 6
    text = format_results(only_release)
    assert "release (seed 321, 32 workers)" in text and "mean+-std" not in text
    cfg = compose_config("test", overrides(toy_root, tmp_path, "checkpoint_format=none",
                                           "protocols=[seeds]"))
    only_seeds = evaluate_protocols(cfg, model, SINGLE)
    assert only_seeds["release"] is None and len(only_seeds["per_seed"]) == 2
    assert "release" not in format_results(only_seeds).splitlines()[2]
