"""Resumable HTTP download with SHA-256 checks, and the SHA256SUMS record of a folder.

A file is fetched into ``<name>.part``; a later attempt asks for the missing bytes with an
HTTP ``Range`` header and starts over when the server ignores it. The finished file is
hashed, checked against an expected SHA-256 if one is given, then renamed into place.

SHA256SUMS format (readable by ``sha256sum -c SHA256SUMS``, which skips ``#`` lines)::

    # size <bytes> <filename>
    <sha256>  <filename>
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from fssam.utils.io import atomic_write_text

log = logging.getLogger(__name__)

SUMS_NAME = "SHA256SUMS"
_SUMS_HEADER = (
    "# Written by scripts/download_weights.py. Check with: sha256sum -c SHA256SUMS\n"
    "# '# size <bytes> <file>' lines give each file's size; sha256sum skips them.\n"
)
_SHA_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_SIZE_LINE = re.compile(r"^# size (\d+) (.+)$")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HINTS = {
    401: "the server wants credentials; use a mirror you can read (--mirror)",
    403: "access refused; a proxy or the mirror blocks the request (check HTTPS_PROXY, --mirror)",
    404: "no file at this address; with --mirror, check that the mirror holds the same path",
    407: "the proxy wants credentials: set HTTPS_PROXY=http://user:password@host:port",
}


class DownloadError(RuntimeError):
    """A download that cannot complete; the message says what happened and what to do."""


class ChecksumError(DownloadError):
    """A downloaded or existing file whose SHA-256 is not the expected one."""


class _Transient(Exception):
    """A failure worth retrying (interrupted transfer, network error, HTTP 5xx)."""


@dataclass(frozen=True)
class Record:
    """Size in bytes (None when unknown) and SHA-256 hex digest of a file."""

    sha256: str
    size: int | None = None


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def read_sums(path: Path) -> dict[str, Record]:
    """Parse a SHA256SUMS file; a missing file gives an empty record."""
    if not path.exists():
        return {}
    sizes: dict[str, int] = {}
    digests: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if match := _SIZE_LINE.match(line):
            sizes[match.group(2)] = int(match.group(1))
        elif match := _SHA_LINE.match(line):
            digests[match.group(2)] = match.group(1).lower()
    return {name: Record(sha, sizes.get(name)) for name, sha in digests.items()}


def write_sums(path: Path, records: dict[str, Record]) -> None:
    """Write a SHA256SUMS file atomically, entries sorted by file name."""
    lines = [_SUMS_HEADER]
    for name in sorted(records):
        record = records[name]
        if record.size is not None:
            lines.append(f"# size {record.size} {name}\n")
        lines.append(f"{record.sha256}  {name}\n")
    atomic_write_text(path, "".join(lines))


def mirror_url(url: str, mirror: str | None) -> str:
    """Replace the scheme and host of ``url`` by ``mirror`` (which may carry a path prefix).

    ``https://dl.fbaipublicfiles.com/dinov2/x/y.pth`` with mirror ``http://m.lan/w`` becomes
    ``http://m.lan/w/dinov2/x/y.pth``.
    """
    if not mirror:
        return url
    base = urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(
            f"mirror must be an http(s) URL such as https://host/prefix, got {mirror!r}")
    path = urlsplit(url).path
    return mirror.rstrip("/") + path


def http_error_message(url: str, err: HTTPError) -> str:
    """One readable sentence for an HTTP error status, with a hint on what to do."""
    hint = _HINTS.get(err.code)
    if hint is None:
        hint = "server error; try again later or use --mirror" if err.code >= 500 else (
            "check the URL and your proxy settings")
    return f"{url} answered HTTP {err.code} {err.reason}: {hint}"


def fetch(url: str, dest: Path, *, expected_sha256: str | None = None, retries: int = 2,
          retry_wait: float = 2.0, timeout: float = 60.0, chunk_size: int = 1 << 20,
          progress: bool | None = None) -> Record:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming what is already there.

    Returns the finished file's record. An interrupted transfer is resumed up to ``retries``
    times; after that the ``.part`` file is kept for the next run. A SHA-256 mismatch with
    ``expected_sha256`` deletes the download and raises ChecksumError.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout=timeout, chunk_size=chunk_size, progress=progress)
            break
        except _Transient as err:
            if attempt == retries:
                kept = f"; {part.name} is kept, run the same command again to resume" if (
                    part.exists()) else ""
                raise DownloadError(f"download failed: {err}{kept}") from err
            log.warning("%s; retrying (%d/%d) in %.0f s", err, attempt + 1, retries, retry_wait)
            time.sleep(retry_wait)
    digest = sha256_file(part)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        part.unlink()
        raise ChecksumError(
            f"checksum mismatch for {dest.name} from {url}: expected sha256 {expected_sha256}, "
            f"got {digest}; the download was deleted. The server or mirror sent a different "
            f"file; check the mirror, or try again later")
    size = part.stat().st_size
    os.replace(part, dest)
    return Record(digest, size)


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": "fssam-download/1.0"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        if err.code >= 500:
            raise _Transient(http_error_message(url, err)) from err
        raise DownloadError(f"download failed: {http_error_message(url, err)}") from err
    except (URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _Transient(f"could not reach {url} ({reason}); check the network, the proxy "
                         f"(HTTPS_PROXY) or use --mirror") from err


def _transfer(url: str, part: Path, *, timeout: float, chunk_size: int,
              progress: bool | None) -> None:
    """One request: append the missing bytes to ``part`` (or rewrite it)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except DownloadError as err:
        cause = err.__cause__
        if offset and isinstance(cause, HTTPError) and cause.code == 416:
            if _range_total(cause.headers.get("Content-Range")) == offset:
                return  # the partial file already holds every byte
            log.warning("%s does not match the server's file; starting over", part.name)
            part.unlink()
            return _transfer(url, part, timeout=timeout, chunk_size=chunk_size, progress=progress)
        raise
    with response:
        start, total = _start_and_total(response, offset, part.name)
        received = _copy(response, part, start, total, chunk_size, progress, url)
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes of {url}")


def _range_total(content_range: str | None) -> int | None:
    match = re.search(r"/(\d+)$", content_range or "")
    return int(match.group(1)) if match else None


def _start_and_total(response: http.client.HTTPResponse, offset: int,
                     name: str) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None if unknown)."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise _Transient(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    if offset:
        log.warning("the server ignored the resume request for %s; starting over", name)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else None


def _copy(response: http.client.HTTPResponse, part: Path, start: int, total: int | None,
          chunk_size: int, progress: bool | None, url: str) -> int:
    """Stream the body into ``part`` from byte ``start``; return the file's size after."""
    received = start
    disable = None if progress is None else not progress  # None: off when not a terminal
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
               desc=part.name.removesuffix(".part"), disable=disable)
    with open(part, "ab" if start else "wb") as f, bar:
        while True:
            try:
                block = response.read(chunk_size)
            except (OSError, http.client.HTTPException) as err:
                raise _Transient(f"transfer of {url} interrupted after {received} bytes "
                                 f"({err!r})") from err
            if not block:
                break
            f.write(block)
            received += len(block)
            bar.update(len(block))
    return received
