"""ingest.fetch against a real HTTP server on 127.0.0.1: caps, total deadline, HTTP errors, local files."""

from __future__ import annotations

import contextlib
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.fetch import fetch_bytes
from model.images import decode_image
from plipbot.errors import FetchError, InputFileError, InvalidImageError, PlipbotError
from tests.imagegen import encode, gradient

IMAGE = encode(gradient((32, 24)), "PNG")
CAP = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    """Routes by path; each behaviour is one way a real server misbehaves."""

    protocol_version = "HTTP/1.1"
    release: threading.Event  # set by the fixture at teardown, so stalled handlers end promptly

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""

    def do_GET(self) -> None:
        routes: dict[str, Callable[[], None]] = {
            "/image.png": self._image,
            "/redirect": self._redirect,
            "/huge-declared": self._huge_declared,
            "/huge-streamed": self._huge_streamed,
            "/huge-chunked": self._huge_chunked,
            "/slow": self._slow,
            "/trickle": self._trickle,
            "/short": self._short,
            "/unavailable": lambda: self.send_error(503),
        }
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            routes.get(self.path, lambda: self.send_error(404))()

    def _image(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.write(IMAGE)

    def _redirect(self) -> None:
        self.send_response(302)
        self.send_header("Location", "/image.png")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _huge_declared(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(100 * 1024 * 1024))
        self.end_headers()
        self.wfile.write(b"\0" * CAP)

    def _huge_streamed(self) -> None:
        """No Content-Length: the body ends when the connection closes (it never would, here)."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        block = b"\0" * 16384
        for _ in range(1000):  # 16 MB unless the client hangs up first
            self.wfile.write(block)

    def _huge_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"\0" * 16384
        for _ in range(1000):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))

    def _slow(self) -> None:
        """Headers at once, then nothing."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.flush()
        self.release.wait(10)

    def _trickle(self) -> None:
        """One byte every 50 ms: each read is quick, the whole is not. Per-read timeouts miss this."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            if self.release.wait(0.05):
                return
            self.wfile.write(b"x")
            self.wfile.flush()

    def _short(self) -> None:
        """Promises 1000 bytes, sends 10, hangs up."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy configured in the environment would capture 127.0.0.1 requests."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server_url() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fetch(url: str, *, max_bytes: int = CAP, timeout_s: float = 5.0, **kwargs: bool) -> bytes:
    return fetch_bytes(url, max_bytes=max_bytes, timeout_s=timeout_s, **kwargs)


def test_fetches_an_image(server_url: str) -> None:
    data = _fetch(f"{server_url}/image.png")
    assert data == IMAGE
    assert decode_image(data).image.size == (32, 24)


def test_follows_redirects(server_url: str) -> None:
    assert _fetch(f"{server_url}/redirect") == IMAGE


def test_declared_oversize_is_refused_without_reading(server_url: str) -> None:
    with pytest.raises(InvalidImageError, match=r"^That file is larger than 64 KB\.$"):
        _fetch(f"{server_url}/huge-declared")


@pytest.mark.parametrize("path", ["/huge-streamed", "/huge-chunked"])
def test_undeclared_oversize_stops_reading_at_the_cap(server_url: str, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidImageError, match=r"^That file is larger than 64 KB\.$"):
        _fetch(server_url + path)
    assert time.monotonic() - started < 2.0  # did not download the 16 MB


def test_a_stalled_response_times_out(server_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^Fetching that link took longer than 0\.5 s\.$") as caught:
        _fetch(f"{server_url}/slow", timeout_s=0.5)
    assert 0.4 < time.monotonic() - started < 2.0
    assert caught.value.retryable


def test_the_deadline_is_total_not_per_read(server_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 0\.5 s"):
        _fetch(f"{server_url}/trickle", timeout_s=0.5)
    assert time.monotonic() - started < 2.0  # the trickle alone would take 50 s


@pytest.mark.parametrize(
    ("path", "status", "message", "retryable"),
    [
        ("/missing.png", 404, r"^That link was not found \(HTTP 404\)\.$", False),
        ("/unavailable", 503, r"^The server behind that link failed \(HTTP 503\); try again later\.$", True),
    ],
)
def test_http_errors(server_url: str, path: str, status: int, message: str, retryable: bool) -> None:
    with pytest.raises(FetchError, match=message) as caught:
        _fetch(server_url + path)
    assert caught.value.status_code == status
    assert caught.value.retryable is retryable
    assert caught.value.url == server_url + path
    assert isinstance(caught.value, PlipbotError)


def test_a_body_cut_short_is_an_error(server_url: str) -> None:
    with pytest.raises(FetchError, match=r"closed the connection early\.$"):
        _fetch(f"{server_url}/short")


def test_unreachable_host() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match=r"^Could not reach 127\.0\.0\.1\.$") as caught:
        _fetch(f"http://127.0.0.1:{port}/x.png")
    assert caught.value.retryable


def test_untrusted_links_may_not_reach_private_addresses(server_url: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^127\.0\.0\.1 is not a public address"):
        _fetch(f"{server_url}/image.png", untrusted=True)
    local = tmp_path / "a.png"
    local.write_bytes(IMAGE)
    for source in (str(local), local.as_uri()):
        with pytest.raises(FetchError, match="Only http and https links are accepted here"):
            _fetch(source, untrusted=True)


@pytest.mark.parametrize(
    "url", ["ftp://example.org/a.png", "data:image/png;base64,AAAA", "javascript:alert(1)"]
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(FetchError, match="Only http and https links"):
        _fetch(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999999/x", "http://127.0.0.1:port/x", "https:///x.png"])
def test_malformed_url(url: str) -> None:
    with pytest.raises(FetchError, match=r"^That link is not a valid URL\.$"):
        _fetch(url)


def test_local_files_by_path_and_file_url(tmp_path: Path) -> None:
    local = tmp_path / "slide image.png"
    local.write_bytes(IMAGE)
    assert _fetch(str(local)) == IMAGE
    assert fetch_bytes(local, max_bytes=CAP, timeout_s=1) == IMAGE
    assert _fetch(local.as_uri()) == IMAGE  # percent-encoded space
    with pytest.raises(InvalidImageError, match=r"larger than 100 bytes\.$"):
        _fetch(str(local), max_bytes=100)
    with pytest.raises(InputFileError, match=r"^No such file"):
        _fetch(str(tmp_path / "missing.png"))


def test_fetch_error_survives_pickling() -> None:
    """Celery ships exceptions between processes; the fields must come back."""
    error = FetchError("That link was not found (HTTP 404).", url="http://x/y", status_code=404)
    restored = pickle.loads(pickle.dumps(error))
    assert (str(restored), restored.url, restored.status_code, restored.retryable) == (
        "That link was not found (HTTP 404).",
        "http://x/y",
        404,
        False,
    )


def test_deadlines_fire_in_order_unless_cancelled() -> None:
    from ingest.fetch import _Deadlines

    deadlines = _Deadlines()
    fired: list[str] = []
    done = threading.Event()
    deadlines.call_later(0.2, lambda: fired.append("late") or done.set())
    cancelled = deadlines.call_later(0.05, lambda: fired.append("cancelled"))
    deadlines.call_later(0.1, lambda: fired.append("early"))  # queued after "late", due before it
    deadlines.cancel(cancelled)
    assert done.wait(5)
    assert fired == ["early", "late"]
