"""Short explanations of a data check's results when their pattern is recognisable."""

from __future__ import annotations

from collections.abc import Sequence

from fssam.tools.data_check.files import Findings
from fssam.tools.data_check.lists import Comparison, Counts
from fssam.data.train_lists import ALL, AUTHORS, TrainList

LABEL_KINDS = ("unreadable_label", "rgb_label", "label_mode", "out_of_range")
FULL_LIST_RATIO = (1.6, 2.0)  # 10582 / 5953 = 1.78 images; per fold 1.7-1.9
CLOSE = 0.05


def _file_notes(dataset: str, findings: Findings, *, missing_explained: bool) -> list[str]:
    """Notes on the files; ``missing_explained``: missing files have been explained."""
    notes = []
    if "rgb_label" in findings:
        fix = ("use SegmentationClassAug (grey class indices), not coloured renderings saved "
               "as RGB" if dataset == "pascal" else "write the labels with "
               "scripts/prepare_coco.py")
        notes.append(f"colour labels: the lists need single-channel class-index PNGs; {fix}")
    if "out_of_range" in findings:
        notes.append("label values outside the class range: colour labels converted to grey, "
                     "or labels with another class numbering")
    if "empty_file" in findings or "truncated_image" in findings:
        notes.append("empty or cut-short files: an interrupted download, unpacking or copy; "
                     "fetch those files again")
    if "size_mismatch" in findings:
        notes.append("labels whose size differs from their image: resized labels, or labels of "
                     "another version of the images")
    missing = sum(findings[k].count for k in ("missing_image", "missing_label") if k in findings)
    if missing and not missing_explained:
        notes.append(f"{missing} listed files are missing: an incomplete download or unpacking, "
                     f"or the wrong --root")
    if any(k in findings for k in LABEL_KINDS):
        notes.append("the list builder stops on unreadable or out-of-range labels: fix the "
                     "labels first, then check again")
    return notes


def _ratio_note(train: Sequence[Comparison], train_list: TrainList) -> str | None:
    ratios = [c.ours / c.reference for c in train if c.row == "images" and c.reference]
    low, high = FULL_LIST_RATIO
    if not ratios or not all(low <= r <= high for r in ratios):
        return None
    mean = sum(ratios) / len(ratios)
    if train_list.choice == ALL:
        return (f"training lists hold about {mean:.2f}x the authors' images: the full augmented "
                f"set is in use (train_list=all: every label not in val.txt, 10582 images with "
                f"the real data); the authors train on 5953 (train_list=authors, the default)")
    return (f"training lists hold about {mean:.2f}x the authors' images: the training list is "
            f"not the authors' 5953 images (train_list=authors)")


def _count_notes(comparisons: Sequence[Comparison], train_list: TrainList,
                 built: bool) -> list[str]:
    if not comparisons:
        return ["no reference count applies to these lists (the reference file covers other "
                "lists, e.g. the authors' COCO counts only the interleaved split; Deepglobe has "
                "no published count)"] if built else []
    wrong = [c for c in comparisons if not c.match]
    if not wrong:
        return ["every count matches the authors': the data reproduces their lists"]
    train = [c for c in comparisons if c.list.startswith("train")]
    val = [c for c in comparisons if c.list.startswith("val")]
    notes = [f"{len(wrong)} of {len(comparisons)} counts differ from the authors' "
             f"(marked MISMATCH)"]
    ratio = _ratio_note(train, train_list)
    if ratio:
        notes.append(ratio)
    if val and train and all(c.match for c in val):
        notes.append("the evaluation lists match; only the training lists differ: the training "
                     "list or the training labels (e.g. the SBD conversion) are not the authors'")
    if val and train and all(c.match for c in train):
        notes.append("the training lists match; the evaluation lists differ: val.txt or the "
                     "validation labels are not the authors'")
    if all(c.ours == 0 for c in comparisons):
        notes.append("every count is zero: no label holds an eligible class (all-background, "
                      "palette or unreadable labels?)")
    elif all(c.ours <= c.reference for c in wrong) and not ratio:
        notes.append("every differing count is lower than the authors': images or labels are "
                     "missing")
    if not ratio and all(abs(c.ours - c.reference) <= CLOSE * max(c.reference, 1) for c in wrong):
        notes.append("the counts are within 5% of the authors' but not equal: the labels differ "
                     "slightly (another label conversion, or resized / re-encoded labels)")
    return notes


def diagnose(*, dataset: str, train_list: TrainList, synthetic: bool, findings: Findings,
             ours: Counts, comparisons: Sequence[Comparison]) -> list[str]:
    """Explanations, most telling first."""
    notes = []
    authors_on_toy = synthetic and train_list.choice == AUTHORS
    if synthetic:
        notes.append("this is the synthetic dataset of scripts/make_toy_dataset.py: its ids, "
                     "images and counts are synthetic and cannot match the authors' counts, so "
                     "every count mismatch is expected; it serves to try the pipeline")
    if authors_on_toy:
        notes.append("the authors' training list names real VOC2012/SBD images, which the "
                     "synthetic dataset does not have (hence the missing files and the training "
                     "lists not built); check its own lists with --train-list all")
    notes += _file_notes(dataset, findings, missing_explained=authors_on_toy)
    failed = [name for name, c in ours.items() if "error" in c]
    if failed:
        notes.append(f"{len(failed)} lists could not be built ({', '.join(failed)}): see the "
                     f"error under each fold")
    counts = _count_notes(comparisons, train_list, len(failed) < len(ours))
    return notes + (counts[:1] if synthetic else counts)
