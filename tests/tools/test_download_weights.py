"""scripts/download_weights.py against a local HTTP server (127.0.0.1, Range support)."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fssam.tools.download import DownloadError, fetch, mirror_url, read_sums
from fssam.tools.weights import DEFAULT_NAMES, WEIGHTS, WeightFile, main

REPO = Path(__file__).resolve().parents[2]
DATA = random.Random(0).randbytes(300_000)
OTHER = random.Random(1).randbytes(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
OFFICIAL = "https://weights.example.org"


class _Server:
    """Serves DATA under several paths; records each request's path and Range header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.interrupt_left = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        range_header = req.headers.get("Range")
        self.requests.append((req.path, range_header))
        body = {"/mirror/w/good.pt": DATA, "/mirror/w/norange.pt": DATA}.get(req.path)
        if body is None:
            req.send_error(404, "Not Found")
            return
        start = int(re.match(r"bytes=(\d+)-", range_header).group(1)) if range_header else 0
        if req.path.endswith("norange.pt"):
            start = 0
        if start >= len(body):
            req.send_response(416)
            req.send_header("Content-Range", f"bytes */{len(body)}")
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        req.send_response(206 if start else 200)
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        req.send_header("Content-Length", str(len(body) - start))
        req.end_headers()
        chunk = body[start:]
        if self.interrupt_left > 0:  # close the connection half-way
            self.interrupt_left -= 1
            chunk = chunk[: len(chunk) // 2]
        req.wfile.write(chunk)


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch, server: _Server) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server.requests.clear()
    server.interrupt_left = 0


TABLE = {
    "good": WeightFile("good.pt", f"{OFFICIAL}/w/good.pt", "good file", SHA),
    "bad": WeightFile("bad.pt", f"{OFFICIAL}/w/good.pt", "served bytes differ",
                      hashlib.sha256(OTHER).hexdigest()),
    "nosum": WeightFile("nosum.pt", f"{OFFICIAL}/w/good.pt", "no table checksum"),
    "norange": WeightFile("norange.pt", f"{OFFICIAL}/w/norange.pt", "ignores Range", SHA),
    "missing": WeightFile("missing.pt", f"{OFFICIAL}/w/missing.pt", "404"),
}


def run(server: _Server, dest: Path, *args: str) -> int:
    return main(["--dest", str(dest), "--mirror", server.base, *args], table=TABLE,
                retry_wait=0.0)


def test_good_file_recorded_verified_and_corruption_detected(server, tmp_path, caplog):
    assert run(server, tmp_path, "--only", "good") == 0
    assert (tmp_path / "good.pt").read_bytes() == DATA
    assert server.requests == [("/mirror/w/good.pt", None)]
    record = read_sums(tmp_path / "SHA256SUMS")["good.pt"]
    assert (record.sha256, record.size) == (SHA, len(DATA))
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=tmp_path,
                       check=True, capture_output=True)
    assert run(server, tmp_path, "--verify") == 0
    assert run(server, tmp_path, "--only", "good") == 0  # present and verified: no request
    assert len(server.requests) == 1

    corrupted = bytearray(DATA)
    corrupted[1000] ^= 0xFF
    (tmp_path / "good.pt").write_bytes(bytes(corrupted))
    caplog.clear()
    assert run(server, tmp_path, "--verify") == 1
    assert "good.pt" in caplog.text and "was deleted" in caplog.text
    assert not (tmp_path / "good.pt").exists()  # the table checksum is enforced
    assert run(server, tmp_path, "--verify") == 1  # and now it is missing
    assert "missing" in caplog.text


def test_record_mismatch_without_table_checksum(server, tmp_path, caplog):
    assert run(server, tmp_path, "--only", "nosum") == 0
    (tmp_path / "nosum.pt").write_bytes(DATA[:-1] + b"x")
    caplog.clear()
    assert run(server, tmp_path, "--verify", "--only", "nosum") == 1
    assert "does not match its entry" in caplog.text
    assert (tmp_path / "nosum.pt").exists()  # a record mismatch is reported, not deleted
    assert run(server, tmp_path, "--only", "nosum") == 1
    assert "--force" in caplog.text
    assert run(server, tmp_path, "--only", "nosum", "--force") == 0
    assert (tmp_path / "nosum.pt").read_bytes() == DATA


def test_existing_file_without_record_is_adopted(server, tmp_path):
    (tmp_path / "nosum.pt").write_bytes(OTHER)
    assert run(server, tmp_path, "--only", "nosum") == 0
    assert server.requests == []
    assert read_sums(tmp_path / "SHA256SUMS")["nosum.pt"].sha256 == hashlib.sha256(
        OTHER).hexdigest()


def test_table_checksum_mismatch_deletes_download(server, tmp_path, caplog):
    assert run(server, tmp_path, "--only", "bad") == 1
    assert "checksum mismatch for bad.pt" in caplog.text and "deleted" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(server, tmp_path, caplog):
    server.interrupt_left = 1
    assert run(server, tmp_path, "--only", "good", "--retries", "0") == 1
    part = tmp_path / "good.pt.part"
    assert part.exists() and 0 < part.stat().st_size < len(DATA)
    assert "run the same command again to resume" in caplog.text
    assert not (tmp_path / "good.pt").exists()
    partial = part.stat().st_size
    assert run(server, tmp_path, "--only", "good") == 0
    assert server.requests[-1] == ("/mirror/w/good.pt", f"bytes={partial}-")
    assert (tmp_path / "good.pt").read_bytes() == DATA and not part.exists()
    assert read_sums(tmp_path / "SHA256SUMS")["good.pt"].sha256 == SHA


def test_interruption_retried_within_one_run(server, tmp_path):
    server.interrupt_left = 2
    assert run(server, tmp_path, "--only", "good", "--retries", "2") == 0
    assert [r[1] is None for r in server.requests] == [True, False, False]
    assert (tmp_path / "good.pt").read_bytes() == DATA


def test_server_ignoring_range_restarts(server, tmp_path):
    (tmp_path / "norange.pt.part").write_bytes(OTHER[:1234])  # stale, wrong bytes
    assert run(server, tmp_path, "--only", "norange") == 0
    assert server.requests == [("/mirror/w/norange.pt", "bytes=1234-")]
    assert (tmp_path / "norange.pt").read_bytes() == DATA


def test_complete_part_file_is_finished_on_416(server, tmp_path):
    (tmp_path / "good.pt.part").write_bytes(DATA)
    assert run(server, tmp_path, "--only", "good") == 0
    assert (tmp_path / "good.pt").read_bytes() == DATA


def test_404_names_the_url(server, tmp_path, caplog):
    assert run(server, tmp_path, "--only", "missing") == 1
    url = f"{server.base}/w/missing.pt"
    assert url in caplog.text and "HTTP 404" in caplog.text
    assert not any(tmp_path.iterdir())
    with pytest.raises(DownloadError, match=re.escape(url)):
        fetch(url, tmp_path / "missing.pt", retries=0)


def test_mirror_mapping():
    url = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"
    assert mirror_url(url, None) == url
    assert mirror_url(url, "http://m.lan:8080") == (
        "http://m.lan:8080/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth")
    assert mirror_url(url, "https://m.lan/a/b/") == (
        "https://m.lan/a/b/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth")
    for bad in ("m.lan/weights", "ftp://m.lan", "file:///srv/weights"):
        with pytest.raises(ValueError, match="mirror"):
            mirror_url(url, bad)


def test_official_table():
    sam2 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
    for size in ("tiny", "small", "base_plus", "large"):
        entry = WEIGHTS[f"sam2_{size}"]
        assert entry.url == f"{sam2}sam2_hiera_{size}.pt"
        assert entry.filename == f"sam2_hiera_{size}.pt"
    for arch in ("vitb14", "vitl14", "vitg14"):
        entry = WEIGHTS[f"dinov2_{arch}"]
        assert entry.url == ("https://dl.fbaipublicfiles.com/dinov2/"
                             f"dinov2_{arch}/dinov2_{arch}_pretrain.pth")
    assert DEFAULT_NAMES == ("sam2_small", "dinov2_vitb14")
    for entry in WEIGHTS.values():
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_verify_of_an_empty_folder_fails(tmp_path, caplog):
    assert main(["--dest", str(tmp_path), "--verify"], table=TABLE) == 1
    assert "no weight file" in caplog.text


def test_unknown_name_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown weight name"):
        main(["--dest", str(tmp_path), "--only", "sam3_huge"])


def test_script_lists_weights():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "download_weights.py"), "--list"],
                         check=True, capture_output=True, text=True).stdout
    assert "sam2_hiera_small.pt" in out and "dinov2_vitb14_pretrain.pth" in out


def test_logging_names_the_download(server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert run(server, tmp_path, "--only", "good") == 0
    assert f"{server.base}/w/good.pt" in caplog.text
