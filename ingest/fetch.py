"""Getting the bytes of an attachment or a bulk-import file, with a byte cap and a total deadline.

Two promises matter more than features here. The cap holds however the server behaves: a declared
Content-Length over it is refused without reading, and an undeclared or lying body is read in
chunks that stop at the cap. The deadline is for the whole fetch, not per socket read: urllib's
`timeout` alone would let a server that trickles one byte per second hold a worker for hours, so a
watchdog shuts the connection's socket down when the time is up.

`untrusted=True` is for links typed by chat users: it refuses local files and connections to
loopback, private and link-local addresses (the address actually connected to is checked, so DNS
tricks do not help). Through an HTTP proxy that address is the proxy's, so leave filtering to it.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import http.client
import ipaddress
import itertools
import os
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit

from model.images import describe_bytes, read_file_capped
from plipbot import __version__
from plipbot.errors import FetchError, InvalidImageError

_CHUNK_BYTES = 64 * 1024
_USER_AGENT = f"plipbot/{__version__} (+https://github.com/plipbot)"


def fetch_bytes(
    url_or_path: str | os.PathLike[str], *, max_bytes: int, timeout_s: float, untrusted: bool = False
) -> bytes:
    """The bytes behind an http(s) link, a `file://` URL or a local path, at most `max_bytes` of them.

    Raises `InvalidImageError` when the content is larger than `max_bytes`, `FetchError` when a link
    is unreachable, answers an HTTP error or takes longer than `timeout_s` in total, and
    `InputFileError` for a missing or unreadable local file.
    """
    if max_bytes < 1 or timeout_s <= 0:
        raise ValueError(f"max_bytes and timeout_s must be positive, got {max_bytes} and {timeout_s}")
    if isinstance(url_or_path, os.PathLike):
        return _read_local(Path(url_or_path), max_bytes, untrusted)
    parts = urlsplit(url_or_path.strip())
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not _has_valid_host(url_or_path.strip()):
            raise FetchError("That link is not a valid URL.", url=url_or_path)
        return _fetch_http(url_or_path.strip(), max_bytes, timeout_s, untrusted)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise FetchError("Only local file:// URLs can be read.", url=url_or_path)
        return _read_local(Path(urllib.request.url2pathname(parts.path)), max_bytes, untrusted)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive letter)
        return _read_local(Path(url_or_path), max_bytes, untrusted)
    raise FetchError("Only http and https links (or local files) can be fetched.", url=url_or_path)


def _has_valid_host(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return False
    return bool(parts.hostname)


def _too_large(max_bytes: int) -> InvalidImageError:
    return InvalidImageError(f"That file is larger than {describe_bytes(max_bytes)}.")


def _read_local(path: Path, max_bytes: int, untrusted: bool) -> bytes:
    if untrusted:
        raise FetchError("Only http and https links are accepted here.", url=str(path))
    return read_file_capped(path, max_bytes)


# --- HTTP --------------------------------------------------------------------------------------


class _RefusedAddressError(OSError):
    """Raised inside `connect()` so urllib wraps it like any connection failure."""


class _SocketWatch:
    """Every socket a fetch opens (redirects open more), so the deadline can shut them all down."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.expired = False

    def adopt(self, sock: socket.socket) -> None:
        if not self._allow_private:
            host = sock.getpeername()[0]
            address = ipaddress.ip_address(host)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if not address.is_global:
                sock.close()
                raise _RefusedAddressError(f"refusing non-public address {address}")
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        """Called by the watchdog timer: unblocks any read in progress with an EOF or an error."""
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


class _Deadlines:
    """Every fetch's deadline on one daemon thread.

    A `threading.Timer` per fetch started a thread for every attachment, several milliseconds of a
    mention on a busy 2-core machine. Deadlines of equal timeouts arrive in order, so a new one only
    wakes the thread when it comes first; a cancelled one is dropped when it reaches the front.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> int:
        """Run `callback` on the deadline thread in `delay_s` seconds unless cancelled; returns a token."""
        with self._cond:
            token = next(self._tokens)
            heapq.heappush(self._heap, (time.monotonic() + delay_s, token, callback))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="plipbot-fetch-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == token:
                self._cond.notify()
            return token

    def cancel(self, token: int) -> None:
        with self._cond:
            self._cancelled.add(token)

    def _next_due(self) -> Callable[[], None]:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                when, token, callback = self._heap[0]
                if token in self._cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled.discard(token)
                    continue
                remaining = when - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                return callback

    def _run(self) -> None:
        while True:
            self._next_due()()


_DEADLINES = _Deadlines()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side, or by us
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, watch: _SocketWatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        super().connect()
        self._watch.adopt(self.sock)


class _WatchedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, watch: _SocketWatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        super().connect()
        self._watch.adopt(self.sock)


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _SocketWatch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_WatchedHTTPConnection, watch=self._watch), req)  # type: ignore[arg-type]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process. Building one parses the system CA bundle, 100-250 ms
    on a small machine, which every fetch (every mention's attachment) used to pay, even over http.
    Contexts are safe to share between threads."""
    return ssl.create_default_context()


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _SocketWatch) -> None:
        super().__init__()
        self._watch = watch
        self._tls = _tls_context()

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(_WatchedHTTPSConnection, watch=self._watch)
        return self.do_open(connection, req, context=self._tls)  # type: ignore[arg-type]


def _build_opener(watch: _SocketWatch) -> urllib.request.OpenerDirector:
    """Only http(s), redirects and error handling: no ftp://, file:// or data: behind a redirect."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _WatchedHTTPHandler(watch),
        _WatchedHTTPSHandler(watch),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _fetch_http(url: str, max_bytes: int, timeout_s: float, untrusted: bool) -> bytes:
    watch = _SocketWatch(allow_private=not untrusted)
    headers = {"User-Agent": _USER_AGENT, "Accept": "image/*, */*;q=0.5"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (the caller checked the scheme)
    host = urlsplit(url).hostname or url
    watchdog = _DEADLINES.call_later(timeout_s, watch.expire)
    try:
        with _build_opener(watch).open(request, timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length", "").strip()
            expected = int(declared) if declared.isdigit() else None
            if expected is not None and expected > max_bytes:
                raise _too_large(max_bytes)
            body = _read_capped(response, max_bytes, expected)
        if watch.expired:
            raise _timed_out(url, timeout_s)
        return body
    except HTTPError as err:
        err.close()
        raise _http_status_error(url, err.code) from err
    except (OSError, http.client.HTTPException) as err:
        if (
            watch.expired
            or isinstance(err, TimeoutError)
            or isinstance(getattr(err, "reason", None), TimeoutError)
        ):
            raise _timed_out(url, timeout_s) from err
        if isinstance(getattr(err, "reason", None), _RefusedAddressError):
            raise FetchError(f"{host} is not a public address; plipbot will not fetch it.", url=url) from err
        if isinstance(err, http.client.IncompleteRead | http.client.RemoteDisconnected):
            raise FetchError(f"{host} closed the connection early.", url=url, retryable=True) from err
        raise FetchError(f"Could not reach {host}.", url=url, retryable=True) from err
    except ValueError as err:  # malformed URL: bad port, no host, control characters
        raise FetchError("That link is not a valid URL.", url=url) from err
    finally:
        _DEADLINES.cancel(watchdog)


def _read_capped(response: http.client.HTTPResponse, max_bytes: int, expected: int | None) -> bytes:
    """Read until EOF or one byte past the cap; `read1` returns what has arrived, never waits for more.

    `read1` reports a body cut short as a plain EOF, so the declared length is checked here.
    """
    chunks: list[bytes] = []
    received = 0
    while chunk := response.read1(_CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    if expected is not None and received < expected:
        raise http.client.IncompleteRead(body, expected - received)
    return body


def _timed_out(url: str, timeout_s: float) -> FetchError:
    return FetchError(f"Fetching that link took longer than {timeout_s:g} s.", url=url, retryable=True)


def _http_status_error(url: str, status: int) -> FetchError:
    reasons = {
        401: "needs a login",
        403: "is not public",
        404: "was not found",
        410: "has been removed",
        429: "is rate-limited; try again later",
    }
    if status in reasons:
        message = f"That link {reasons[status]} (HTTP {status})."
    elif status >= 500:
        message = f"The server behind that link failed (HTTP {status}); try again later."
    else:
        message = f"That link answered HTTP {status}."
    return FetchError(message, url=url, status_code=status, retryable=status == 429 or status >= 500)
