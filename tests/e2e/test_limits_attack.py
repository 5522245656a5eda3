"""Attacks on a real server process: slow uploads, huge bodies, archive bombs, refused uploads.

Each attack checks what the issue asks: a clear 4xx answer with a JSON body, the server's
memory bounded (psutil on the server process) and its health probe answering within 1 s
while the attack runs; a refused upload leaves nothing stored (no blob, no record, no
temporary file).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.limits_server import Server, running_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
        reason="the limits do not depend on the engine (SQLite only, CI time)",
    ),
]
MB = 1024 * 1024
IDLE = 3  # seconds a body may stay silent in these tests


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    (tmp / "tmp").mkdir()
    with running_server(
        tmp,
        CTAPROD_API__BODY_IDLE_SECONDS=str(IDLE),
        CTAPROD_SANDBOXES__MAX_UNPACKED_BYTES=str(20 * MB),
        TMPDIR=str(tmp / "tmp"),
    ) as srv:
        yield srv


def _raw(server: Server, head: str, first: bytes) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(head.encode() + first)
    return sock


def _status(sock: socket.socket) -> int:
    data = sock.recv(4096)
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0


class Watch:
    """Probes health and samples the server's RSS while an attack runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.base = server.rss()
        self.peak = self.base
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.slowest = max(self.slowest, self.server.health_seconds())
            self.peak = max(self.peak, self.server.rss())

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def check(self, extra_mb: int = 150) -> None:
        assert self.slowest < 1.0, f"health probe took {self.slowest:.2f} s during the attack"
        assert self.peak - self.base < extra_mb * MB, (
            f"server RSS grew by {(self.peak - self.base) / MB:.0f} MB during the attack"
        )


def test_100_slow_uploads_get_408_and_the_server_stays_responsive(server: Server) -> None:
    auth = f"Authorization: Bearer {server.user_token}\r\n"
    socks = []
    with Watch(server) as watch:
        for i in range(100):
            if i % 3 == 0:
                head = (
                    f"PUT /api/sandboxes/{'a' * 64} HTTP/1.1\r\nHost: x\r\n{auth}"
                    "Content-Length: 100000\r\n\r\n"
                )
            elif i % 3 == 1:
                head = (
                    f"PUT /api/data/files?lfn=/ctao/user/a/alice/f{i} HTTP/1.1\r\nHost: x\r\n"
                    f"{auth}Content-Length: 100000\r\n\r\n"
                )
            else:
                head = (
                    f"POST /api/jobs HTTP/1.1\r\nHost: x\r\n{auth}"
                    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                )
            socks.append(_raw(server, head, b"{"))
        time.sleep(1)
        # Meanwhile ordinary requests are served at once.
        start = time.monotonic()
        mine = httpx.get(
            f"{server.url}/api/auth/whoami",
            headers={"Authorization": f"Bearer {server.user_token}"},
            timeout=10,
        )
        assert mine.status_code == 200
        assert time.monotonic() - start < 1.0
        statuses = [_status(s) for s in socks]
    for s in socks:
        s.close()
    assert statuses.count(408) == 100, statuses
    watch.check()


def test_huge_bodies_are_refused_with_413_without_taking_memory(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.user_token}"}
    with Watch(server) as watch:
        # Declared up front: refused before it is read.
        big = b'{"text": "' + b"x" * (40 * MB) + b'"}'
        reply = httpx.post(
            f"{server.url}/api/jobs",
            content=big,
            headers={**auth, "Content-Type": "application/json"},
            timeout=60,
        )
        assert reply.status_code == 413
        assert reply.json()["error"] == "too_large"

        # Chunked (no Content-Length): counted as it arrives.
        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"x" * MB

        reply = httpx.post(
            f"{server.url}/api/jobs/search",
            content=chunks(),
            headers={**auth, "Content-Type": "application/json"},
            timeout=60,
        )
        assert reply.status_code == 413
        assert reply.json()["detail"]["max_bytes"] > 0
    watch.check()


def _bomb(size: int) -> bytes:
    out = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        info = tarfile.TarInfo("zeros")
        info.size = size

        class Zeros(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: memoryview) -> int:  # type: ignore[override]
                b[:] = bytes(len(b))
                return len(b)

        tar.addfile(info, io.BufferedReader(Zeros()))
    return out.getvalue()


def _nothing_stored(server: Server, sha: str) -> None:
    auth = {"Authorization": f"Bearer {server.user_token}"}
    assert httpx.head(f"{server.url}/api/sandboxes/{sha}", headers=auth).status_code == 404
    stored = list((server.state_dir / "storage").rglob(f"{sha}*"))
    assert stored == [], stored
    leftovers = list((server.state_dir.parent / "tmp").glob("ctaprod-sb-*"))
    assert leftovers == [], leftovers


def test_an_archive_bomb_is_refused_and_nothing_is_stored(server: Server) -> None:
    bomb = _bomb(300 * MB)  # ~300 KB of gzip, 300 MB unpacked; the limit is 20 MB
    assert len(bomb) < 1 * MB
    sha = hashlib.sha256(bomb).hexdigest()
    with Watch(server) as watch:
        reply = httpx.put(
            f"{server.url}/api/sandboxes/{sha}",
            content=bomb,
            headers={"Authorization": f"Bearer {server.user_token}"},
            timeout=60,
        )
    assert reply.status_code == 413, reply.text
    assert "unpacks to more than" in reply.json()["message"] or "exceeds" in reply.json()["message"]
    watch.check()
    _nothing_stored(server, sha)


def _small_archive(tag: str) -> bytes:
    out = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        data = tag.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    ("token", "query", "content", "status"),
    [
        # an output sandbox needs the job's token: refused before anything is stored
        ("user", "?job_id=1", "refused-output", 403),
        ("pilot", "", "refused-pilot", 403),
        ("user", "", "not-an-archive", 400),
        ("user", "?job_id=99999999999999999999", "refused-id", 422),
    ],
)
def test_a_refused_upload_stores_nothing(
    server: Server, token: str, query: str, content: str, status: int
) -> None:
    body = b"just text, no tar" if content == "not-an-archive" else _small_archive(content)
    sha = hashlib.sha256(body).hexdigest()
    bearer = server.user_token
    if token == "pilot":
        issued = httpx.post(
            f"{server.url}/api/admin/tokens",
            json={"user": "pilot", "group": "ctao_pilot", "kind": "pilot"},
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )
        bearer = issued.json()["token"]
    reply = httpx.put(
        f"{server.url}/api/sandboxes/{sha}{query}",
        content=body,
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"error", "message", "detail"}
    assert str(server.state_dir) not in reply.text
    assert "/tmp" not in reply.text
    _nothing_stored(server, sha)


def test_error_bodies_survive_any_input(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.user_token}", "Content-Type": "application/json"}
    cases = [
        b'{"job_ids": [123456789012345678901234567890]}',
        b'{"job_ids": [NaN]}',
        b'{"job_ids": [1e999]}',
        b'{"owner": "\\ud800"}',
        b'{"owner": "a\\u0000b"}',
        b"[" * 900 + b"]" * 900,
    ]
    for body in cases:
        reply = httpx.post(f"{server.url}/api/jobs/search", content=body, headers=auth)
        assert reply.status_code == 422, (body[:40], reply.text)
        assert reply.json()["error"] == "invalid_request"
    reply = httpx.get(f"{server.url}/api/jobs/123456789012345678901234567890", headers=auth)
    assert reply.status_code == 422
    reply = httpx.get(f"{server.url}/api/catalog/stat?lfn=/a%00b", headers=auth)
    assert reply.status_code == 422
    reply = httpx.get(f"{server.url}/no/such/route", headers=auth)
    assert reply.status_code == 404
    assert reply.json()["error"] == "not_found"
    assert json.dumps(reply.json())
