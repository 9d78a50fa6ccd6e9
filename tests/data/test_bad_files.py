"""Bad files met while training or testing: each kind stops with an error naming the file,
the episode and the file's role in it, and pointing to scripts/check_data.py, which lists
every kind in one run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader

from fssam.data import build_dataset, collate_episodes
from fssam.data.bad_files import BadFileError, jpeg_truncated
from fssam.data.semantic import build_base_dataset
from fssam.tools.data_check import cli as check_data


def make(root: Path, cache: Path, mode: str = "val"):
    return build_dataset(dataset="pascal", root=str(root), cache_dir=str(cache), fold=0,
                         shot=2, mode=mode, image_size=32, num_episodes=12, train_list="all")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a jpeg at all")


def _small(path: Path) -> None:
    assert cv2.imwrite(str(path), np.zeros((40, 50), np.uint8))


def _out_of_range(path: Path) -> None:
    label = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    label[:3, :3] = 42
    assert cv2.imwrite(str(path), label)


# name -> (which file, damage, what the error says)
KINDS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "truncated image": ("image", _truncate, "is truncated (a JPEG without its end marker"),
    "unreadable image": ("image", _garbage, "cannot read image"),
    "empty image": ("image", _empty, "is empty (0 bytes)"),
    "empty label": ("label", _empty, "is empty (0 bytes)"),
    "label of another size": ("label", _small, "size mismatch"),
    "label with class ids outside the dataset's": ("label", _out_of_range,
                                                   "has values [42] outside 0..20 and 255"),
}


def first_use(dataset, record: int) -> tuple[int, str]:
    """The first episode that reads ``record`` and the record's role in it."""
    for index, episode in enumerate(dataset.episodes):
        if episode.query == record:
            return index, "the query"
        if record in episode.supports:
            k = episode.supports.index(record)
            return index, f"support {k + 1} of {len(episode.supports)}"
    raise AssertionError(f"record {record} is in no episode")


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_bad_file_met_in_an_episode_is_named_with_the_episode(kind, fresh_pascal,
                                                                   tmp_path):
    which, damage, says = KINDS[kind]
    dataset = make(fresh_pascal, tmp_path / "lists")  # the lists are built and cached
    record = dataset.episodes[3].supports[0]
    path = getattr(dataset.records[record], which)
    damage(Path(path))
    index, role = first_use(dataset, record)
    for earlier in range(index):
        dataset[earlier]
    with pytest.raises(BadFileError) as caught:
        dataset[index]
    message = str(caught.value)
    assert path in message and says in message, message
    assert f"[{role} of evaluation episode {index} (seeds protocol, seed 0)]" in message
    assert "scripts/check_data.py" in message and "in one pass" in message


def test_the_error_survives_a_loading_process_and_names_the_training_episode(fresh_pascal,
                                                                           tmp_path):
    dataset = make(fresh_pascal, tmp_path / "lists", mode="train")
    dataset.set_epoch(3)
    image = Path(dataset.records[0].image)
    _truncate(image)
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=collate_episodes)
    with pytest.raises(BadFileError, match=re.escape(str(image))) as caught:
        for _ in loader:
            pass
    assert re.search(r"of training episode \d+ of epoch 3\]", str(caught.value))


def test_the_base_class_stage_names_its_item(fresh_pascal):
    dataset = build_base_dataset(dataset="pascal", root=str(fresh_pascal), fold=0, mode="val",
                                 image_size=33)
    _empty(Path(dataset.pairs[2][1]))
    with pytest.raises(BadFileError, match=r"is empty \(0 bytes\) \[val item 2 of epoch 0\]"):
        dataset[2]


def test_jpeg_end_marker_beyond_the_tail_is_found_by_walking_the_file(tmp_path):
    path = tmp_path / "padded.jpg"
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (32, 32, 3),
                                                                     dtype=np.uint8))
    image, appended = path.read_bytes(), b"\0" * 5000  # data written after the image
    path.write_bytes(image + appended)
    assert not jpeg_truncated(str(path))
    path.write_bytes(image[:len(image) // 2] + appended)  # cut short, then zero-filled
    assert jpeg_truncated(str(path))


def test_check_data_lists_every_kind_in_one_run(fresh_pascal, tmp_path, capsys):
    dataset = make(fresh_pascal, tmp_path / "lists")
    damaged = {}
    for n, (kind, (which, damage, _)) in enumerate(KINDS.items()):
        path = getattr(dataset.records[n], which)
        damage(Path(path))
        damaged[kind] = Path(path).name
    report_file = tmp_path / "report.json"
    code = check_data.main(
        ["--dataset", "pascal", "--root", str(fresh_pascal), "--train-list", "all",
         "--cache-dir", str(tmp_path / "check_lists"), "--workers", "2", "--json",
         str(report_file)])
    text = capsys.readouterr().out
    findings = {f["kind"]: f for f in json.loads(report_file.read_text())["findings"]}
    assert code == 1
    expected = {"truncated image": "truncated_image", "unreadable image": "unreadable_image",
                "empty image": "empty_file", "empty label": "empty_file",
                "label of another size": "size_mismatch",
                "label with class ids outside the dataset's": "out_of_range"}
    for kind, name in damaged.items():
        assert any(name in example for example in findings[expected[kind]]["examples"]), kind
        assert name in text, kind
    assert findings["empty_file"]["count"] == 2
