"""Resumable, verified, atomic downloads, tested against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from brainalign._utils.errors import BrainAlignWarning, ChecksumError
from brainalign.io import fetch as fetch_mod
from brainalign.io.fetch import FetchReport, download_file, fetch_dataset
from brainalign.io.manifest import manifest_from_dict, validate_dataset

N_BYTES = 300_007  # not a multiple of the chunk size
DROP_AT = 100_003


class _Server:
    """A threaded HTTP server whose behaviour the tests switch between requests.

    Modes: ``"range"`` honours ``Range`` (206, and 416 past the end); ``"ignore"`` always sends
    the whole file with 200; ``"drop"`` announces the full length, sends ``drop_at`` bytes and
    closes the connection (a killed transfer); ``"corrupt"`` sends the same number of bytes with
    some flipped. It counts requests and body bytes sent.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.mode = "range"
        self.drop_at = DROP_AT
        self.drop_times = 10**9  # how many requests drop before the server behaves
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def reset_counts(self) -> None:
        self.requests = []
        self.bytes_sent = 0

    def _send(self, h: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:  # counted before writing, so the client never sees bytes not yet counted
            self.bytes_sent += len(body)
        h.wfile.write(body)
        h.wfile.flush()

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        name = h.path.lstrip("/")
        rng = h.headers.get("Range")
        with self._lock:
            self.requests.append((name, rng))
        if name not in self.files:
            h.send_error(404, "Not Found")
            return
        data = self.files[name]
        start = 0
        if rng and self.mode in ("range", "drop"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        body = data[start:]
        if self.mode == "corrupt":
            body = bytes(b ^ 0xFF if i % 1000 == 0 else b for i, b in enumerate(body))
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if self.mode == "drop" and self.drop_times > 0:
            self.drop_times -= 1
            self._send(h, body[: self.drop_at])
            h.close_connection = True
            return
        self._send(h, body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payload() -> bytes:
    return np.random.default_rng(7).integers(0, 256, N_BYTES, dtype=np.uint8).tobytes()


@pytest.fixture
def server(payload: bytes) -> Iterator[_Server]:
    srv = _Server({"data.bin": payload, "small.txt": b"onset\tduration\n0.5\t1.0\n"})
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod, "_BACKOFF_S", 0.0)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_equals_bytes(server, payload, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    out = download_file(
        server.url("data.bin"), dest, sha256=_sha(payload), size=N_BYTES, progress=False
    )
    assert out == dest
    assert dest.read_bytes() == payload
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert server.requests == [("data.bin", None)]
    assert server.bytes_sent == N_BYTES


def test_interrupted_download_resumes_with_only_the_missing_bytes(server, payload, tmp_path):
    dest = tmp_path / "data.bin"
    part = tmp_path / "data.bin.part"
    server.mode = "drop"
    with pytest.raises(ConnectionError, match=r"interrupted.*data\.bin\.part.*resume"):
        download_file(server.url("data.bin"), dest, sha256=_sha(payload), retries=0, progress=False)
    assert not dest.exists()  # a killed download never looks complete
    assert part.stat().st_size == DROP_AT
    assert part.read_bytes() == payload[:DROP_AT]

    server.mode = "range"
    server.reset_counts()
    download_file(server.url("data.bin"), dest, sha256=_sha(payload), progress=False)
    assert server.requests == [("data.bin", f"bytes={DROP_AT}-")]
    assert server.bytes_sent == N_BYTES - DROP_AT
    assert not part.exists()

    reference = tmp_path / "reference.bin"
    download_file(server.url("data.bin"), reference, progress=False)
    assert dest.read_bytes() == reference.read_bytes() == payload


def test_retries_resume_within_one_call(server, payload, tmp_path):
    server.mode = "drop"
    server.drop_times = 2
    dest = download_file(
        server.url("data.bin"), tmp_path / "d.bin", sha256=_sha(payload), retries=3, progress=False
    )
    assert dest.read_bytes() == payload
    assert [r for _, r in server.requests] == [None, f"bytes={DROP_AT}-", f"bytes={2 * DROP_AT}-"]
    assert server.bytes_sent == N_BYTES  # nothing sent twice


def test_server_ignoring_range_restarts_from_scratch(server, payload, tmp_path):
    dest = tmp_path / "data.bin"
    # a stale partial file with WRONG bytes: a server that ignores Range must not be appended to
    (tmp_path / "data.bin.part").write_bytes(b"\x00" * 5000)
    server.mode = "ignore"
    download_file(server.url("data.bin"), dest, sha256=_sha(payload), progress=False)
    assert server.requests == [("data.bin", "bytes=5000-")]
    assert server.bytes_sent == N_BYTES
    assert dest.read_bytes() == payload


def test_complete_part_file_is_verified_after_416(server, payload, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(payload)
    dest = download_file(server.url("data.bin"), tmp_path / "data.bin", progress=False)
    assert server.requests == [("data.bin", f"bytes={N_BYTES}-")]
    assert server.bytes_sent == 0
    assert dest.read_bytes() == payload


def test_checksum_mismatch_raises_and_leaves_no_file(server, payload, tmp_path):
    server.mode = "corrupt"
    dest = tmp_path / "data.bin"
    corrupted = bytes(b ^ 0xFF if i % 1000 == 0 else b for i, b in enumerate(payload))
    url = server.url("data.bin")
    with pytest.raises(ChecksumError) as exc:
        download_file(url, dest, sha256=_sha(payload), progress=False)
    msg = str(exc.value)
    assert url in msg
    assert _sha(payload) in msg
    assert _sha(corrupted) in msg
    assert "removed" in msg
    assert not dest.exists()
    assert not (tmp_path / "data.bin.part").exists()


def test_size_mismatch_is_caught_before_downloading(server, tmp_path):
    with pytest.raises(ChecksumError, match=r"server reports 300007 bytes.*expected size is 5"):
        download_file(server.url("data.bin"), tmp_path / "x.bin", size=5, progress=False)
    assert not (tmp_path / "x.bin").exists()
    assert not (tmp_path / "x.bin.part").exists()  # nothing was written


def test_existing_verified_file_makes_no_request(server, payload, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(payload)
    download_file(server.url("data.bin"), dest, sha256=_sha(payload), progress=False)
    download_file(server.url("data.bin"), dest, size=N_BYTES, progress=False)
    assert server.requests == []
    assert dest.read_bytes() == payload


def test_existing_wrong_file_is_replaced_with_a_warning(server, payload, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"old")
    with pytest.warns(BrainAlignWarning, match=r"does not match.*downloading it again"):
        download_file(server.url("data.bin"), dest, sha256=_sha(payload), progress=False)
    assert dest.read_bytes() == payload


def test_http_error_names_url_and_status(server, tmp_path):
    with pytest.raises(OSError, match=r"nope\.bin failed: HTTP 404"):
        download_file(server.url("nope.bin"), tmp_path / "nope.bin", progress=False)
    assert len(server.requests) == 1  # 404 is not retried
    assert not (tmp_path / "nope.bin").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "s3://bucket/key"}, "'url' must be an http"),
        ({"sha256": "abc"}, "'sha256' must be 64 hexadecimal"),
        ({"size": -1}, "'size' must be a number of bytes"),
        ({"retries": -1}, "'retries' must be an integer"),
        ({"timeout": 0}, "'timeout' must be positive"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"url": "http://127.0.0.1:9/x", **kwargs}
    with pytest.raises(ValueError, match=match):
        download_file(args.pop("url"), tmp_path / "x", progress=False, **args)


def test_progress_bar_runs(server, payload, tmp_path):
    dest = download_file(server.url("data.bin"), tmp_path / "p.bin", progress=True, chunk_size=4096)
    assert dest.read_bytes() == payload


# --------------------------------------------------------------------------------------------
# fetch_dataset
# --------------------------------------------------------------------------------------------


def _manifest(server: _Server, payload: bytes, tmp_path: Path):
    return manifest_from_dict(
        {
            "name": "toy",
            "modality": "eeg",
            "access": {
                "notes": "Sign the toy agreement, then run the command below.",
                "commands": ["toycli sync {root}"],
                "base_url": server.base + "/",
            },
            "files": [
                {"path": "data.bin", "url": server.url("data.bin"), "sha256": _sha(payload)},
                {"path": "small.txt", "role": "events"},  # URL from access.base_url
                {"path": "gone.bin", "url": server.url("gone.bin")},
                {"path": "sub-*/eeg/*.vhdr"},  # a pattern: obtained by hand
            ],
        },
        source=tmp_path / "toy.yaml",
    )


def test_fetch_dataset_reports_fetched_failed_manual_and_skips(server, payload, tmp_path):
    m = _manifest(server, payload, tmp_path)
    root = tmp_path / "root"
    report = fetch_dataset(m, root, progress=False, retries=0)
    assert isinstance(report, FetchReport)
    status = {r.path: r.status for r in report.results}
    assert status == {
        "data.bin": "fetched",
        "small.txt": "fetched",
        "gone.bin": "failed",
        "sub-*/eeg/*.vhdr": "manual",
    }
    assert (root / "data.bin").read_bytes() == payload
    assert (root / "small.txt").read_bytes() == server.files["small.txt"]
    assert not report.ok
    assert "HTTP 404" in report.failed[0].detail
    text = str(report)
    assert "Sign the toy agreement" in text
    assert f"toycli sync {root}" in text
    assert "1 entries have no download URL" in text
    frame = report.to_frame()
    assert list(frame["status"]) == ["fetched", "fetched", "failed", "manual"]

    server.reset_counts()
    again = fetch_dataset(m, root, only=["data.bin", "small.txt"], progress=False)
    assert [r.status for r in again.results] == ["skipped", "skipped"]
    assert again.ok
    assert server.requests == []

    checked = validate_dataset(m, root, progress=False)
    by_path = {e.path: e.status for e in checked.entries}
    assert by_path["data.bin"] == "present"
    assert by_path["gone.bin"] == "missing"


def test_fetch_dataset_dry_run_downloads_nothing(server, payload, tmp_path):
    m = _manifest(server, payload, tmp_path)
    report = fetch_dataset(m, tmp_path / "root", only="*.bin", dry_run=True, progress=False)
    assert [(r.path, r.status) for r in report.results] == [
        ("data.bin", "would_fetch"),
        ("gone.bin", "would_fetch"),
    ]
    assert server.requests == []
    assert not (tmp_path / "root").exists()
    assert str(report).startswith("Dry run for 'toy'")


def test_fetch_dataset_only_must_match(server, payload, tmp_path):
    m = _manifest(server, payload, tmp_path)
    with pytest.raises(ValueError, match=r"'only'.*'dta\.bin'.*Did you mean 'data\.bin'"):
        fetch_dataset(m, tmp_path, only="dta.bin", progress=False)


def test_fetch_named_manifest_without_urls_lists_access_notes(tmp_path):
    report = fetch_dataset("nsd", tmp_path, progress=False)
    assert {r.status for r in report.results} == {"manual"}
    text = str(report)
    assert "Data Access Agreement" in text
    assert f"{tmp_path}/nsddata_stimuli/stimuli/nsd/" in text  # {root} filled in
