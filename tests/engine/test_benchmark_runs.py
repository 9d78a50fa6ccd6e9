"""FSS-1000 and the cross-domain track end to end on synthetic copies: test.py's rows on
HSNet's test classes (HSNet's episodes, seed 0, scored at 400 x 400) and on Deepglobe
(PATNet's); training on FSS-1000 training classes with validation on validation classes,
and PATNet's cross-domain training (every PASCAL class, validation on FSS-1000)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fssam.data.benchmarks import fss1000
from fssam.engine import training
from fssam.engine.config import compose_config
from fssam.tools.toy_fss import make_toy_fss

from .conftest import launch, records

REPO = Path(__file__).resolve().parents[2]
PARITY = REPO / "tests" / "fixtures" / "parity"


@pytest.fixture(scope="module")
def fss_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fss")
    make_toy_fss(root, splits=("test",), size=(32, 32))
    make_toy_fss(root, splits=("train", "val"), size=(32, 32), classes=3)
    return root


def test_cli_scores_hsnets_test_episodes(fss_root: Path, tmp_path: Path) -> None:
    args = ["debug=cpu", "dataset=fss1000", "experiment=fss1000_fssam",
            f"dataset.root={fss_root}", f"dataset.cache_dir={tmp_path / 'lists'}",
            f"exp_dir={tmp_path}", "episodes=6", "seeds=[321,123]", "checkpoint_format=none",
            "trainer.progress=false", "trainer.num_threads=1", "sam2.image_size=64"]
    launch(REPO / "test.py", args, 1, cwd=REPO, timeout=600)
    run_dir = tmp_path / "fss1000" / "FSSAM_tiny_dino" / "split0" / "1shot" / "micro"
    results = json.loads((run_dir / "results.json").read_text())
    release = results["release"]
    assert (release["seed"], release["num_episodes"]) == (0, 6)  # HSNet's seed
    # HSNet's first six queries are the first class's images: one class scored
    assert set(release["class_iou"]) == {"761"}
    assert all(set(row["class_iou"]) <= {str(c) for c in fss1000.subset_classes("test")}
               for row in results["per_seed"])
    assert results["summary"]["seeds"] == [321, 123]


def test_training_validates_on_validation_classes(fss_root: Path, tmp_path: Path) -> None:
    train_list, val_list = tmp_path / "train.txt", tmp_path / "val.txt"
    for path, split in ((train_list, "train"), (val_list, "val")):
        names = fss1000.class_names(split)[:3]
        path.write_text("".join(f"{c}/{n}\n" for c in names for n in range(1, 11)))
    cfg = compose_config("train", [
        "debug=cpu", "dataset=fss1000", f"dataset.root={fss_root}",
        f"dataset.cache_dir={tmp_path / 'lists'}", f"dataset.train_list={train_list}",
        f"dataset.val_list={val_list}", f"exp_dir={tmp_path / 'exp'}",
        f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
        f"sam2.checkpoint={PARITY / 'micro_weights.pt'}", "sam2.image_size=64",
        "trainer.batch_size=4", "trainer.max_iterations=2", "trainer.val_per_epoch=1",
        "trainer.val_episodes=4", "trainer.val_seed=0", "trainer.num_threads=1",
        "trainer.progress=false"])
    summary = training.train(cfg)
    assert summary["iteration"] == 2
    run_dir = tmp_path / "exp" / "fss1000" / "FSSAM_tiny_dino" / "split0" / "1shot" / "micro"
    val = records(run_dir, "val")
    assert val and all(r["class_iou"] and set(r["class_iou"]) <= {"521", "522", "523"}
                       for r in val)
    assert (run_dir / "best.pt").is_file()


def test_cli_scores_patnets_deepglobe_episodes(tmp_path: Path) -> None:
    from fssam.tools.toy_crossdomain import make_toy_crossdomain
    root = tmp_path / "deepglobe"
    make_toy_crossdomain(root, "deepglobe", per_class=4, size=(32, 32))
    args = ["debug=cpu", "dataset=deepglobe", "experiment=crossdomain_test",
            f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'lists'}",
            f"exp_dir={tmp_path}", "episodes=12", "seeds=[321]", "checkpoint_format=none",
            "trainer.progress=false", "trainer.num_threads=1", "sam2.image_size=64"]
    launch(REPO / "test.py", args, 1, cwd=REPO, timeout=600)
    run_dir = tmp_path / "deepglobe" / "FSSAM_tiny_dino" / "split0" / "1shot" / "micro"
    release = json.loads((run_dir / "results.json").read_text())["release"]
    assert (release["seed"], release["num_episodes"]) == (0, 12)
    assert set(release["class_iou"]) == {str(c) for c in range(1, 7)}  # i mod 6: two each


def test_crossdomain_training_uses_every_pascal_class_and_validates_on_fss(
        fss_root: Path, tmp_path: Path) -> None:
    from fssam.tools.toy import make_toy_pascal
    pascal = tmp_path / "pascal"
    make_toy_pascal(pascal, num_images=40, seed=0, workers=1)
    val_list = tmp_path / "val.txt"
    val_list.write_text("".join(f"{c}/{n}\n" for c in fss1000.class_names("val")[:3]
                                for n in range(1, 11)))
    cfg = compose_config("train", [
        "debug=cpu", "dataset=pascal", "experiment=pascal_crossdomain", f"dataset.root={pascal}",
        "dataset.train_list=all", f"dataset.cache_dir={tmp_path / 'lists'}",
        f"val_dataset.root={fss_root}", f"val_dataset.val_list={val_list}",
        f"val_dataset.cache_dir={tmp_path / 'lists'}", f"exp_dir={tmp_path / 'exp'}",
        f"sam2.config={PARITY / 'sam2_micro_v1.yaml'}",
        f"sam2.checkpoint={PARITY / 'micro_weights.pt'}", "sam2.image_size=64",
        "trainer.batch_size=4", "trainer.total_batch_size=null", "trainer.max_iterations=2",
        "trainer.val_episodes=4", "trainer.num_threads=1", "trainer.progress=false",
        "trainer.num_workers=0"])
    assert (cfg.split, cfg.val_dataset.name) == (4, "fss1000")
    summary = training.train(cfg)
    assert summary["iteration"] == 2
    run_dir = tmp_path / "exp" / "pascal" / "FSSAM_tiny_dino" / "split4" / "1shot" / "micro"
    val = records(run_dir, "val")
    assert val and all(set(r["class_iou"]) <= {"521", "522", "523"} for r in val)
    train_log = (run_dir / "train.log").read_text()
    assert "training items" in train_log


def test_all_classes_fold_trains_on_every_class(tmp_path: Path) -> None:
    from fssam.data.folds import base_classes, novel_classes
    assert base_classes("pascal", 4) == list(range(1, 21)) and novel_classes("pascal", 4) == []
    with pytest.raises(ValueError, match="fold 4 for coco"):
        base_classes("coco", 4)
