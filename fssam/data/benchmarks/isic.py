"""ISIC2018 (cross-domain, PATNet's protocol): skin-lesion images of the ISIC 2018 Task 1
training set, 3 classes, test only.

Layout (PATNet's loader): ``ISIC2018_Task1-2_Training_Input/<class>/<id>.jpg`` (the images
sorted into class folders 1, 2, 3; ``scripts/prepare_isic.py`` does it from a class list)
and the flat ``ISIC2018_Task1_Training_GroundTruth/<id>_segmentation.png`` masks (grey >=
128 is the lesion). Classes: 1 nevus, 2 melanoma, 3 seborrheic keratosis (SANSA's
numbering; PATNet does not say which name is which folder). Test: 600 episodes, class
``i mod 3`` (200 each), PATNet's draws (NumPy seed 0), scored at 400 x 400.
"""

from __future__ import annotations

import os

from fssam.data.benchmarks.base import (
    ALL,
    BINARY,
    TEST,
    Benchmark,
    Pairs,
    class_folder,
    missing_folders,
    pairs_from_list,
    sorted_images,
)

CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")
IMAGES = "ISIC2018_Task1-2_Training_Input"
MASKS = "ISIC2018_Task1_Training_GroundTruth"


def mask_of(root: str, image: str) -> str:
    stem = os.path.splitext(os.path.basename(image))[0]
    return os.path.join(root, MASKS, f"{stem}_segmentation.png")


def pairs(root: str, subset: str, chosen) -> Pairs:
    """(image, mask) of every class folder, classes in order, images in sorted order."""
    if chosen.choice != ALL:
        return pairs_from_list(chosen.path, (root,), lambda i: (
            os.path.join(root, IMAGES, f"{i}.jpg"), mask_of(root, f"{i}.jpg")))
    folders = [os.path.join(root, IMAGES, str(c)) for c in range(1, len(CLASSES) + 1)]
    missing_folders(folders, "ISIC class")
    return [(image, mask_of(root, image)) for f in folders for image in sorted_images(f)]


BENCHMARK = Benchmark(
    name="isic", title="ISIC2018", num_classes=len(CLASSES),
    subset_classes=lambda subset: range(1, len(CLASSES) + 1),
    class_of=lambda image, label: class_folder(image, 1), pairs=pairs, layout=(IMAGES, MASKS),
    labels=BINARY, test_subset=TEST, only_test=True, fold_schemes=("patnet",),
    release_rule="patnet", release_seed=0, episodes=600, metric_size=400,
    reference_counts="isic_counts.json")
