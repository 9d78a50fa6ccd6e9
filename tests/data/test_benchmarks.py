"""The benchmark descriptions (fssam/data/benchmarks): one per benchmark, read by the rest."""

from __future__ import annotations

import hashlib

import pytest

from fssam.data import benchmarks
from fssam.data.benchmarks.base import Benchmark
from fssam.data.train_lists import LIST_DIR, authors_list_path, reference_counts_path


def test_get_names_every_benchmark_and_refuses_others() -> None:
    assert {"pascal", "coco"} <= set(benchmarks.NAMES)
    assert all(isinstance(benchmarks.get(n), Benchmark) for n in benchmarks.NAMES)
    with pytest.raises(ValueError, match="unknown dataset 'voc'.*pascal"):
        benchmarks.get("voc")


def test_pascal_and_coco_numbers() -> None:
    pascal, coco = benchmarks.get("pascal"), benchmarks.get("coco")
    assert (pascal.num_classes, pascal.num_folds, pascal.fold_schemes) == (20, 4, ("contiguous",))
    assert (coco.num_classes, coco.num_folds) == (80, 4)
    assert set(coco.fold_schemes) == {"interleaved", "contiguous"}
    assert (pascal.default_train_list, coco.default_train_list) == ("authors", "all")
    assert (pascal.episodes, coco.episodes, pascal.release_seed) == (1000, 1000, 321)
    assert (pascal.hmnet_release, coco.hmnet_release) == ("HMNet", "HMNetAMP")
    assert pascal.test_subset == coco.test_subset == "val"
    assert pascal.subsets == ("train", "val")
    assert pascal.metric_size is None and pascal.labels == "index"


@pytest.mark.parametrize("name", benchmarks.NAMES)
def test_shipped_files_exist(name: str) -> None:
    bench = benchmarks.get(name)
    if bench.reference_counts:
        assert reference_counts_path(name).is_file()
    if bench.authors_list:
        path = authors_list_path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == bench.authors_list[1]
        assert path.parent == LIST_DIR


@pytest.mark.parametrize("name", benchmarks.NAMES)
def test_lists_of_a_fold_do_not_share_classes(name: str) -> None:
    bench = benchmarks.get(name)
    if bench.only_test:  # a cross-domain target: every class is tested
        assert bench.classes("test", 0, "") == list(range(1, bench.num_classes + 1))
        return
    if bench.data_classes is not None:  # folds computed from the data: tests/data/test_lvis.py
        with pytest.raises(ValueError, match="give the dataset root and the shot"):
            bench.classes("val", 0, bench.fold_schemes[0])
        return
    for scheme in bench.fold_schemes:
        for fold in range(bench.num_folds):
            lists = [set(bench.classes(s, fold, scheme)) for s in bench.subsets]
            train, evaluation = lists[0], set().union(*lists[1:])
            assert train and evaluation and not train & evaluation
            assert train | evaluation <= set(range(1, bench.num_classes + 1))


def test_bad_fold_and_subset_name_the_benchmark() -> None:
    with pytest.raises(ValueError, match="fold 5 for pascal"):  # 4: the all-classes fold
        benchmarks.get("pascal").classes("val", 5, "contiguous")
    assert benchmarks.get("pascal").classes("val", 4, "contiguous") == []
    with pytest.raises(ValueError, match="fold 4 for coco"):
        benchmarks.get("coco").classes("val", 4, "interleaved")
    with pytest.raises(ValueError, match="unknown mode 'test' for pascal"):
        benchmarks.get("pascal").classes("test", 0, "contiguous")
    with pytest.raises(ValueError, match="unknown coco_folds 'x'"):
        benchmarks.get("coco").novel_classes(0, "x")
