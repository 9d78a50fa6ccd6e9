"""The authors' HMNet and BAM weight files: where to get them, where to place them under the
weights folder (``pretrained/``), and a check of what a user placed.

Their hosts (Google Drive / Baidu links in the authors' READMEs) serve no direct downloads,
so the files are listed with their pages and verified in place, never fetched. Layout, under
``pretrained/hmnet/`` (the release's own relative paths):

- ``initmodel/resnet50_v2.pth``, ``initmodel/vgg16_bn.pth``: ImageNet backbones;
- ``initmodel/PSPNet/<dataset>/split<i>/<backbone>/best.pth``: BAM base learners;
- ``exp/pascal/HMNet/split<i>/<backbone>/snapshot/best_<K>shot.pth`` and
  ``exp/coco/HMNetAMP/...``: trained HMNet models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fssam.data.benchmarks import BENCHMARKS
from fssam.data.folds import base_classes
from fssam.models.hmnet.backbones import BACKBONES

HMNET_PAGE = "https://github.com/Sam1224/HMNet"
BAM_PAGE = "https://github.com/chunbolang/BAM"
ROOT = "hmnet"
SHOTS = (1, 5)  # the release trained 1- and 5-shot checkpoints


@dataclass(frozen=True)
class ReleaseFile:
    """One file of the authors, its place under the weights folder and what it must load
    into: ``kind`` "imagenet" (a PSPNet backbone), "base_learner" (a PSPNet) or "hmnet"."""

    relpath: str
    description: str
    page: str
    kind: str
    backbone: str
    dataset: str | None = None
    shot: int = 1


def _entries() -> dict[str, ReleaseFile]:
    files = {
        "hmnet_imagenet_resnet50": ReleaseFile(
            f"{ROOT}/initmodel/resnet50_v2.pth", "ImageNet deep-stem ResNet-50 (PSPNet "
            "pre-training only)", BAM_PAGE, "imagenet", "resnet50"),
        "hmnet_imagenet_vgg": ReleaseFile(
            f"{ROOT}/initmodel/vgg16_bn.pth", "ImageNet VGG-16-BN, torchvision (PSPNet "
            "pre-training only)", BAM_PAGE, "imagenet", "vgg")}
    released = [b for b in BENCHMARKS.values() if b.hmnet_release]
    for bench in released:
        dataset, run = bench.name, bench.hmnet_release
        for split in range(bench.num_folds):
            for backbone in BACKBONES:
                tag = f"{dataset}_split{split}_{backbone}"
                files[f"bam_{tag}"] = ReleaseFile(
                    f"{ROOT}/initmodel/PSPNet/{dataset}/split{split}/{backbone}/best.pth",
                    f"BAM base learner, {dataset} fold {split}, {backbone}", BAM_PAGE,
                    "base_learner", backbone, dataset)
                for shot in SHOTS:
                    files[f"hmnet_{tag}_{shot}shot"] = ReleaseFile(
                        f"{ROOT}/exp/{dataset}/{run}/split{split}/{backbone}/snapshot/"
                        f"best_{shot}shot.pth", f"HMNet, {dataset} fold {split}, {backbone}, "
                        f"{shot}-shot", HMNET_PAGE, "hmnet", backbone, dataset, shot)
    return files


RELEASE_FILES: dict[str, ReleaseFile] = _entries()


def listing(dest: Path) -> str:
    """The text ``download_weights.py --list`` shows for these files."""
    root = dest / ROOT
    lines = ["",
             "HMNet and BAM files: their authors' hosts serve no direct downloads. Get them "
             "from these pages,",
             f"place them under {root}/ as shown, then check them with --verify:",
             f"  {BAM_PAGE}  README: ImageNet backbones and PSPNet base learners "
             f"(its initmodel/ folder -> {root}/initmodel/)",
             f"  {HMNET_PAGE}  README: trained models (extract exp.tar.gz in {root}/)"]
    lines += [f"{name:36s} {entry.relpath}" for name, entry in RELEASE_FILES.items()]
    return "\n".join(lines)


def not_downloadable(name: str, dest: Path) -> str:
    entry = RELEASE_FILES[name]
    return (f"{name}: cannot be downloaded (the authors' host serves no direct downloads); "
            f"get it from {entry.page} and place it at {dest / entry.relpath}, then run "
            f"--verify --only {name}")


def present(dest: Path) -> list[str]:
    """Names of the files placed under ``dest``."""
    return [name for name, entry in RELEASE_FILES.items() if (dest / entry.relpath).exists()]


def check(name: str, dest: Path, models: dict | None = None,
          sizes: dict[str, int] | None = None) -> str | None:
    """None if ``dest/<relpath>`` exists, loads with ``weights_only`` and fits the model it
    is meant for (keys and shapes); else the problem. ``models`` caches built models;
    ``sizes`` shrinks them (the files hold the release's sizes; tests give tiny ones)."""
    from fssam.models.hmnet import (HMNet, PSPNet, load_base_learner, load_imagenet_backbone,
                                    load_release_checkpoint)
    entry = RELEASE_FILES[name]
    path = dest / entry.relpath
    if not path.is_file():
        return f"{name}: {path} is missing"
    models = {} if models is None else models
    bases = len(base_classes(entry.dataset or "pascal", 0))  # the same for every fold
    key = (entry.kind, entry.backbone, bases, entry.shot)
    sizes = {k: v for k, v in (sizes or {}).items()
             if entry.kind == "hmnet" or k in ("backbone_width", "head_dim")}
    if key not in models:
        models[key] = (HMNet(backbone=entry.backbone, shot=entry.shot, num_base_classes=bases,
                             **sizes) if entry.kind == "hmnet" else
                       PSPNet(backbone=entry.backbone, num_base_classes=bases, **sizes))
    model = models[key]
    try:
        if entry.kind == "imagenet":
            load_imagenet_backbone(model, path, backbone=entry.backbone)
        elif entry.kind == "base_learner":
            load_base_learner(model, path)
        else:
            load_release_checkpoint(model, path)
    except (KeyError, ValueError) as err:
        return f"{name}: {err.args[0] if err.args else err}"
    return None
