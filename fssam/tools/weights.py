"""Pretrained weights FSSAM needs (SAM 2 v1, DINOv2), their URLs, download and verification;
and the HMNet / BAM files, which are placed by hand and verified (``hmnet_weights``).

Command line: ``python scripts/download_weights.py --help``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fssam.tools import hmnet_weights
from fssam.tools.download import (SUMS_NAME, ChecksumError, DownloadError, Record, fetch,
                                  mirror_url, read_sums, sha256_file, write_sums)

log = logging.getLogger(__name__)

_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_DINO_BASE = "https://dl.fbaipublicfiles.com/dinov2/"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file; ``sha256`` (when known) is enforced."""

    filename: str
    url: str
    description: str
    sha256: str | None = None


def _sam2(name: str, description: str) -> WeightFile:
    return WeightFile(f"sam2_hiera_{name}.pt", f"{_SAM2_BASE}sam2_hiera_{name}.pt", description)


def _dino(arch: str, description: str) -> WeightFile:
    filename = f"dinov2_{arch}_pretrain.pth"
    return WeightFile(filename, f"{_DINO_BASE}dinov2_{arch}/{filename}", description)


WEIGHTS: dict[str, WeightFile] = {
    "sam2_tiny": _sam2("tiny", "SAM 2 Hiera-T (v1, 07/2024)"),
    "sam2_small": _sam2("small", "SAM 2 Hiera-S (v1, 07/2024), used by the paper"),
    "sam2_base_plus": _sam2("base_plus", "SAM 2 Hiera-B+ (v1, 07/2024)"),
    "sam2_large": _sam2("large", "SAM 2 Hiera-L (v1, 07/2024)"),
    "dinov2_vitb14": _dino("vitb14", "DINOv2 ViT-B/14 (original release), used by the paper"),
    "dinov2_vitl14": _dino("vitl14", "DINOv2 ViT-L/14 (original release)"),
    "dinov2_vitg14": _dino("vitg14", "DINOv2 ViT-g/14 (original release)"),
}
DEFAULT_NAMES: tuple[str, ...] = ("sam2_small", "dinov2_vitb14")


def check_file(path: Path, entry: WeightFile, record: Record | None) -> str:
    """Compare a file on disk with the table and the SHA256SUMS record.

    Returns ``"ok"``, ``"unrecorded"`` (no checksum to compare with), ``"missing"``,
    ``"table-mismatch"`` or ``"record-mismatch"``.
    """
    if not path.exists():
        return "missing"
    if record is not None and record.size is not None and path.stat().st_size != record.size:
        return "table-mismatch" if entry.sha256 else "record-mismatch"
    if entry.sha256 is None and record is None:
        return "unrecorded"
    digest = sha256_file(path)
    if entry.sha256 is not None and digest != entry.sha256.lower():
        return "table-mismatch"
    if record is not None and digest != record.sha256:
        return "record-mismatch"
    return "ok"


def _record_of(path: Path) -> Record:
    return Record(sha256_file(path), path.stat().st_size)


def ensure(name: str, entry: WeightFile, dest: Path, *, mirror: str | None = None,
           force: bool = False, **fetch_kwargs) -> None:
    """Make ``dest/entry.filename`` present and correct, downloading it if needed.

    Raises DownloadError (or ChecksumError) with a message naming the file and the remedy.
    """
    dest.mkdir(parents=True, exist_ok=True)
    path, sums_path = dest / entry.filename, dest / SUMS_NAME
    sums = read_sums(sums_path)
    state = check_file(path, entry, sums.get(entry.filename))
    if state in ("ok", "unrecorded"):
        if entry.filename not in sums:
            sums[entry.filename] = _record_of(path)
            write_sums(sums_path, sums)
            log.info("%s: %s already present, checksum recorded in %s", name, path, SUMS_NAME)
        else:
            log.info("%s: %s already present and verified", name, path)
        return
    if state == "table-mismatch":
        path.unlink()
        log.error("%s: %s did not match the expected sha256 and was deleted; downloading again",
                  name, path)
    elif state == "record-mismatch" and not force:
        raise ChecksumError(
            f"{path} does not match its entry in {sums_path} (corrupted or replaced); "
            f"delete it and run again, or run with --force to download it again")
    url = mirror_url(entry.url, mirror)
    log.info("%s: downloading %s -> %s", name, url, path)
    sums[entry.filename] = fetch(url, path, expected_sha256=entry.sha256, **fetch_kwargs)
    write_sums(sums_path, read_sums(sums_path) | {entry.filename: sums[entry.filename]})
    log.info("%s: done, sha256 %s", name, sums[entry.filename].sha256)


def verify(names: Sequence[str], table: Mapping[str, WeightFile], dest: Path) -> list[str]:
    """Check files against the table and SHA256SUMS without downloading; return problems.

    A file failing its table checksum is deleted. Files neither in the table nor recorded
    are only reported as unverified (a warning, not a problem).
    """
    sums = read_sums(dest / SUMS_NAME)
    problems = []
    for name in names:
        entry = table[name]
        path = dest / entry.filename
        state = check_file(path, entry, sums.get(entry.filename))
        if state == "ok":
            log.info("%s: %s OK", name, path)
        elif state == "unrecorded":
            log.warning("%s: %s has no recorded checksum; run without --verify to record it",
                        name, path)
        elif state == "missing":
            problems.append(f"{name}: {path} is missing")
        elif state == "table-mismatch":
            path.unlink()
            problems.append(f"{name}: {path} did not match the expected sha256 and was deleted; "
                            f"run without --verify to download it again")
        else:
            problems.append(f"{name}: {path} does not match its entry in {dest / SUMS_NAME} "
                            f"(corrupted or replaced); run again with --force --only {name}")
    return problems


def _names_to_verify(args: argparse.Namespace, table: Mapping[str, WeightFile],
                     dest: Path) -> list[str]:
    if args.only or args.all:
        return _selected(args, table)
    recorded = read_sums(dest / SUMS_NAME)
    return [name for name, entry in table.items()
            if entry.filename in recorded or (dest / entry.filename).exists()
            ] + hmnet_weights.present(dest)


def _selected(args: argparse.Namespace, table: Mapping[str, WeightFile]) -> list[str]:
    names = list(table) if args.all else list(args.only or DEFAULT_NAMES)
    unknown = [name for name in names
               if name not in table and name not in hmnet_weights.RELEASE_FILES]
    if unknown:
        raise SystemExit(f"unknown weight name(s) {unknown}; choose from {sorted(table)} or "
                         f"an HMNet/BAM name of --list")
    return names


def _verify_all(names: Sequence[str], table: Mapping[str, WeightFile], dest: Path
                ) -> list[str]:
    """``verify`` for downloadable files; HMNet/BAM files are loaded into their model."""
    problems = verify([n for n in names if n in table], table, dest)
    models: dict = {}
    for name in (n for n in names if n not in table):
        problem = hmnet_weights.check(name, dest, models)
        if problem:
            problems.append(problem)
        else:
            log.info("%s: %s OK (loads, keys and shapes fit)", name,
                     dest / hmnet_weights.RELEASE_FILES[name].relpath)
    return problems


def build_parser(default_dest: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download the SAM 2 and DINOv2 checkpoints FSSAM uses into a folder "
                    f"(default {default_dest}); resumable, checksums recorded in {SUMS_NAME}. "
                    "HMNet's files are placed by hand (see --list) and checked with --verify.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only", nargs="+", metavar="NAME",
                       help=f"weights to get (default: {' '.join(DEFAULT_NAMES)}); see --list")
    which.add_argument("--all", action="store_true", help="every file in the table")
    parser.add_argument("--dest", type=Path, default=default_dest, help="target folder")
    parser.add_argument("--mirror", metavar="BASE_URL",
                        help="replace scheme and host of each official URL by BASE_URL: "
                             "https://dl.fbaipublicfiles.com/<path> -> BASE_URL/<path>")
    parser.add_argument("--verify", action="store_true",
                        help="only check existing files against the table and SHA256SUMS; "
                             "HMNet/BAM files: they load and fit their model")
    parser.add_argument("--force", action="store_true",
                        help="download again files that do not match SHA256SUMS")
    parser.add_argument("--retries", type=int, default=3,
                        help="resume attempts after an interrupted transfer (default 3)")
    parser.add_argument("--list", action="store_true", help="list the known weights and exit")
    return parser


def main(argv: Sequence[str] | None = None, *, table: Mapping[str, WeightFile] | None = None,
         default_dest: Path = Path("pretrained"), retry_wait: float = 2.0) -> int:
    """Command line entry point; returns the exit status (0 all good, 1 a failure)."""
    table = WEIGHTS if table is None else table
    parser = build_parser(default_dest)
    args = parser.parse_args(argv)
    try:
        mirror_url(_DINO_BASE, args.mirror)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.list:
        for name, entry in table.items():
            default = " (default)" if name in DEFAULT_NAMES else ""
            print(f"{name:16s} {entry.filename:28s} {entry.description}{default}\n"
                  f"{'':16s} {entry.url}")
        print(hmnet_weights.listing(args.dest))
        return 0
    if args.verify:
        names = _names_to_verify(args, table, args.dest)
        problems = _verify_all(names, table, args.dest) if names else [
            f"no weight file in {args.dest} to verify; download them first"]
    else:
        problems = []
        for name in _selected(args, table):
            if name not in table:
                problems.append(hmnet_weights.not_downloadable(name, args.dest))
                continue
            try:
                ensure(name, table[name], args.dest, mirror=args.mirror, force=args.force,
                       retries=args.retries, retry_wait=retry_wait)
            except DownloadError as err:
                problems.append(f"{name}: {err}")
    for problem in problems:
        log.error("%s", problem)
    if problems:
        log.error("%d problem(s); see the messages above", len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
