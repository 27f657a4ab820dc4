"""deploy/qdrant-snapshot.sh, run for real (bash + curl) against a small stand-in for Qdrant's
snapshot REST API: create, download, delete, upload-and-recover, with api-key and checksums."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "qdrant-snapshot.sh"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@dataclass
class FakeQdrant:
    """State of the stand-in: collections' data, snapshots on the server, what was restored."""

    url: str = ""
    api_key: str | None = None
    collections: dict[str, bytes] = field(default_factory=dict)
    snapshots: dict[tuple[str, str], bytes] = field(default_factory=dict)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    restored: dict[str, tuple[bytes, dict[str, list[str]]]] = field(default_factory=dict)
    lie_about_checksum: bool = False


def _handler(state: FakeQdrant) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"status": {"error": message}, "time": 0})

        def _authorised(self) -> bool:
            if state.api_key and self.headers.get("api-key") != state.api_key:
                self._error(401, "Invalid API key")
                return False
            return True

        def _route(self) -> tuple[list[str], dict[str, list[str]]]:
            parts = urlsplit(self.path)
            return [p for p in parts.path.split("/") if p], parse_qs(parts.query)

        def do_GET(self) -> None:
            if not self._authorised():
                return
            path, _ = self._route()
            if path == ["collections"]:
                names = [{"name": name} for name in state.collections]
                self._json(200, {"result": {"collections": names}, "status": "ok"})
            elif len(path) == 3 and path[2] == "snapshots":
                names = [{"name": n} for (c, n) in state.snapshots if c == path[1]]
                self._json(200, {"result": names, "status": "ok"})
            elif len(path) == 4 and path[2] == "snapshots" and (path[1], path[3]) in state.snapshots:
                data = state.snapshots[(path[1], path[3])]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self._error(404, f"Not found: {self.path}")

        def do_POST(self) -> None:
            if not self._authorised():
                return
            path, query = self._route()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if len(path) == 3 and path[2] == "snapshots":
                if path[1] not in state.collections:
                    self._error(404, f"Not found: Collection `{path[1]}` doesn't exist!")
                    return
                data = b"SNAPSHOT:" + state.collections[path[1]]
                name = f"{path[1]}-1234-2025-01-01-00-00-00.snapshot"
                state.snapshots[(path[1], name)] = data
                checksum = hashlib.sha256(b"other" if state.lie_about_checksum else data).hexdigest()
                self._json(
                    200, {"result": {"name": name, "size": len(data), "checksum": checksum}, "status": "ok"}
                )
            elif len(path) == 4 and path[2:] == ["snapshots", "upload"]:
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                [part] = [
                    p
                    for p in message.iter_parts()
                    if p.get_param("name", header="content-disposition") == "snapshot"
                ]
                content = part.get_payload(decode=True)
                expected = query.get("checksum", [None])[0]
                if expected and hashlib.sha256(content).hexdigest() != expected:
                    self._error(400, "Snapshot checksum mismatch")
                    return
                state.restored[path[1]] = (content, query)
                self._json(200, {"result": True, "status": "ok"})
            else:
                self._error(404, f"Not found: {self.path}")

        def do_DELETE(self) -> None:
            if not self._authorised():
                return
            path, _ = self._route()
            key = (path[1], path[3]) if len(path) == 4 else None
            if key in state.snapshots:
                del state.snapshots[key]
                state.deleted.append(key)
                self._json(200, {"result": True, "status": "ok"})
            else:
                self._error(404, "Snapshot not found")

    return Handler


@pytest.fixture
def qdrant() -> Iterator[FakeQdrant]:
    state = FakeQdrant(
        collections={"cases__plip__67ade53d": b"a" * 5000, "cases__clip__3d74acf9": b"b" * 300}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def run_script(*args: str, url: str, backup_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "QDRANT_URL": url,
        "BACKUP_DIR": str(backup_dir),
        "CURL_TIMEOUT": "20",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


def test_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    assert os.access(SCRIPT, os.X_OK), "deploy/qdrant-snapshot.sh should be executable"


def test_backup_downloads_every_collection_then_restore_uploads_it(
    qdrant: FakeQdrant, tmp_path: Path
) -> None:
    done = run_script("backup", url=qdrant.url, backup_dir=tmp_path / "backups")
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip())
    assert run_dir.parent == tmp_path / "backups"
    for name, data in qdrant.collections.items():
        snapshot = run_dir / f"{name}.snapshot"
        assert snapshot.read_bytes() == b"SNAPSHOT:" + data
        digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
        assert (run_dir / f"{name}.snapshot.sha256").read_text() == f"{digest}  {name}.snapshot\n"
    assert not qdrant.snapshots, "server-side snapshots are deleted after download by default"
    assert len(qdrant.deleted) == 2

    snapshot = run_dir / "cases__plip__67ade53d.snapshot"
    done = run_script("restore", str(snapshot), url=qdrant.url, backup_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    content, query = qdrant.restored["cases__plip__67ade53d"]
    assert content == snapshot.read_bytes()
    assert query["priority"] == ["snapshot"]
    assert query["checksum"] == [hashlib.sha256(content).hexdigest()]

    done = run_script("restore", str(snapshot), "cases_copy", url=qdrant.url, backup_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cases_copy" in qdrant.restored


def test_named_collections_keep_remote_and_list(qdrant: FakeQdrant, tmp_path: Path) -> None:
    done = run_script(
        "backup", "cases__clip__3d74acf9", url=qdrant.url, backup_dir=tmp_path / "b", KEEP_REMOTE="1"
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in Path(done.stdout.strip()).glob("*.snapshot")] == [
        "cases__clip__3d74acf9.snapshot"
    ]
    assert list(qdrant.snapshots) == [
        ("cases__clip__3d74acf9", "cases__clip__3d74acf9-1234-2025-01-01-00-00-00.snapshot")
    ]
    listed = run_script("list", url=qdrant.url, backup_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "cases__clip__3d74acf9\tcases__clip__3d74acf9-1234-2025-01-01-00-00-00.snapshot\n"


def test_corrupt_backup_is_refused_before_upload(qdrant: FakeQdrant, tmp_path: Path) -> None:
    done = run_script("backup", "cases__clip__3d74acf9", url=qdrant.url, backup_dir=tmp_path)
    snapshot = Path(done.stdout.strip()) / "cases__clip__3d74acf9.snapshot"
    snapshot.write_bytes(snapshot.read_bytes()[:-10])
    done = run_script("restore", str(snapshot), url=qdrant.url, backup_dir=tmp_path)
    assert done.returncode != 0
    assert "does not match" in done.stderr
    assert not qdrant.restored


def test_checksum_mismatch_on_download_leaves_no_file(qdrant: FakeQdrant, tmp_path: Path) -> None:
    qdrant.lie_about_checksum = True
    done = run_script("backup", "cases__clip__3d74acf9", url=qdrant.url, backup_dir=tmp_path)
    assert done.returncode != 0
    assert "checksum mismatch for cases__clip__3d74acf9" in done.stderr
    assert not list(tmp_path.glob("*/*.snapshot*"))


def test_api_key_and_errors(qdrant: FakeQdrant, tmp_path: Path) -> None:
    qdrant.api_key = "sekrit"
    done = run_script("backup", url=qdrant.url, backup_dir=tmp_path)
    assert done.returncode != 0
    assert "GET /collections: HTTP 401: Invalid API key" in done.stderr
    done = run_script("backup", url=qdrant.url, backup_dir=tmp_path, QDRANT_API_KEY="sekrit")
    assert done.returncode == 0, done.stderr

    done = run_script("backup", "missing", url=qdrant.url, backup_dir=tmp_path, QDRANT_API_KEY="sekrit")
    assert done.returncode != 0
    assert "HTTP 404: Not found: Collection `missing` doesn't exist!" in done.stderr


def test_unreachable_qdrant_and_usage(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = run_script("backup", url=f"http://127.0.0.1:{port}", backup_dir=tmp_path)
    assert done.returncode != 0
    assert f"cannot reach Qdrant at http://127.0.0.1:{port}" in done.stderr
    done = run_script("frobnicate", url="http://127.0.0.1:1", backup_dir=tmp_path)
    assert done.returncode == 2
    assert "backup [COLLECTION...]" in done.stderr


def test_works_without_jq(qdrant: FakeQdrant, tmp_path: Path) -> None:
    """The python3 fallback reads Qdrant's JSON the same way (servers without jq)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for tool in Path(directory).iterdir():
            target = bin_dir / tool.name
            if tool.name != "jq" and not target.exists() and os.access(tool, os.X_OK):
                target.symlink_to(tool)
    env_path = str(bin_dir)
    done = subprocess.run(
        ["bash", str(SCRIPT), "backup"],
        capture_output=True,
        text=True,
        env={
            "PATH": env_path,
            "QDRANT_URL": qdrant.url,
            "BACKUP_DIR": str(tmp_path / "b"),
            "KEEP_REMOTE": "1",
        },
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in Path(done.stdout.strip()).glob("*.snapshot")) == sorted(
        f"{name}.snapshot" for name in qdrant.collections
    )
    listed = subprocess.run(
        ["bash", str(SCRIPT), "list", "cases__clip__3d74acf9"],
        capture_output=True,
        text=True,
        env={"PATH": env_path, "QDRANT_URL": qdrant.url},
        timeout=60,
        check=False,
    )
    assert listed.stdout == "cases__clip__3d74acf9\tcases__clip__3d74acf9-1234-2025-01-01-00-00-00.snapshot\n"
