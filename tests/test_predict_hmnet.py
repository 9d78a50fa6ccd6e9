"""predict.py with HMNet: our checkpoint (settings from its saved config) and an authors'
checkpoint (settings from --override); masks equal what evaluation computes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fssam.tools.toy import make_toy_pascal
from fssam.data.transforms import eval_transform
from fssam.engine.evaluator import logits_to_prediction
from fssam.engine.config import compose_config
from fssam.contract import episode_images, positive_foreground
from fssam.engine.feature_cache import BatchFeatures, PassMemo
from fssam.predict import main
from fssam.engine.config import model_kwargs

TINY = ["model=hmnet_tiny", "dataset=toy", "shot=2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two supports of one class with their masks, a query, and a tiny 2-shot HMNet saved
    as our checkpoint and as an authors' one."""
    root = tmp_path_factory.mktemp("toy")
    meta = make_toy_pascal(root, num_images=12, seed=1, workers=1)
    voc = root / "VOC2012"
    images = {n: c for split in meta["images"].values() for n, c in split.items()}
    cls = max(range(1, 21), key=lambda c: sum(str(c) in v for v in images.values()))
    names = sorted(n for n, v in images.items() if str(cls) in v)[:3]
    masks = []
    for name in names[:2]:
        label = cv2.imread(str(voc / "SegmentationClassAug" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(root / f"{name}_mask.png"), (label == cls).astype(np.uint8))
        masks.append(root / f"{name}_mask.png")
    config = OmegaConf.to_container(compose_config("train", TINY), resolve=True,
                                    enum_to_str=True)
    torch.manual_seed(0)
    model = instantiate(model_kwargs(OmegaConf.create(config["model"]))).eval()
    files = {"supports": [voc / "JPEGImages" / f"{n}.jpg" for n in names[:2]], "masks": masks,
             "query": voc / "JPEGImages" / f"{names[2]}.jpg", "model": model}
    with torch.no_grad():  # centre the meta learner's logits: a mixed prediction
        meta = model(_batch(files), return_intermediates=True)["intermediates"]["meta_out"]
        model.cls_meta[3].bias[1] -= (meta[:, 1] - meta[:, 0]).median()
    ours, release = root / "best.pt", root / "best_2shot.pth"
    torch.save({"model": model.trainable_state_dict(), "epoch": 1, "config": config}, ours)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": {}, "optimizer_swin": {}}, release)
    return {**files, "ours": ours, "release": release}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _batch(files: dict) -> dict[str, torch.Tensor]:
    """The episode as evaluation prepares it (float images through eval_transform)."""
    def prepared(path: Path, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = eval_transform(_rgb(path).astype(np.float32), mask, 65)
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).long()

    pairs = [prepared(s, cv2.imread(str(m), cv2.IMREAD_GRAYSCALE))
             for s, m in zip(files["supports"], files["masks"])]
    query = _rgb(files["query"])
    return {"query_img": prepared(files["query"], np.zeros(query.shape[:2], np.uint8))[0][None],
            "support_imgs": torch.stack([p[0] for p in pairs])[None],
            "support_masks": torch.stack([p[1] for p in pairs])[None]}


def _reference(files: dict) -> np.ndarray:
    with torch.no_grad():
        batch = _batch(files)  # every image encoded alone, as evaluation (and predict.py) does
        images = episode_images(batch)
        features = BatchFeatures(files["model"], images, [None] * len(images), None)
        logits = files["model"](batch, features=features, memo=PassMemo(size_gb=0))["logits"][0]
    size = _rgb(files["query"]).shape[:2]
    return logits_to_prediction(logits, size, positive_foreground).numpy()


def test_our_and_the_authors_checkpoints_give_evaluations_masks(files, tmp_path):
    common = ["--support-images", *map(str, files["supports"]), "--support-masks",
              *map(str, files["masks"]), "--query", str(files["query"]), "--device", "cpu"]
    assert main(["--checkpoint", str(files["ours"]), "--output", str(tmp_path / "a"),
                 *common]) == 0
    assert main(["--checkpoint", str(files["release"]), "--checkpoint-format", "release",
                 "--override", *TINY[:2], "--output", str(tmp_path / "b"), *common]) == 0
    expected = _reference(files)
    assert 0 < expected.mean() < 1  # the comparison means something
    stem = files["query"].stem
    for out in ("a", "b"):
        written = cv2.imread(str(tmp_path / out / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written == 255, expected)


def test_a_k_shot_hmnet_needs_k_supports(files, tmp_path, caplog):
    code = main(["--checkpoint", str(files["ours"]), "--support-images", str(files["supports"][0]),
                 "--support-masks", str(files["masks"][0]), "--query", str(files["query"]),
                 "--output", str(tmp_path), "--device", "cpu"])
    assert code == 2
    assert "2 shot(s)" in caplog.text and "1 support" in caplog.text
