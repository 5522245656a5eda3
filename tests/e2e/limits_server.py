"""A real ``ctaprod server`` process on its own SQLite state directory, for the tests that
attack it (slow clients, large bodies, archive bombs, the schema fuzzer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port


@dataclass
class Server:
    url: str
    admin_token: str
    user_token: str
    state_dir: Path
    process: subprocess.Popen[bytes]

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def health_seconds(self) -> float:
        """How long the health probe takes to answer 200 (a new connection each time)."""
        start = time.monotonic()
        response = httpx.get(f"{self.url}/api/health", timeout=10)
        assert response.status_code == 200, response.text
        return time.monotonic() - start


@contextmanager
def running_server(tmp_path: Path, **settings: str) -> Iterator[Server]:
    state = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTAPROD_", "PYTEST"))}
    env.update(
        CTAPROD_STATE_DIR=str(state),
        CTAPROD_SECRET_KEY="limits-test-" + "k" * 40,
        CTAPROD_PORT=str(port),
        CTAPROD_EXTENSIONS="[]",
        CTAPROD_CONFIG_DIR=str(tmp_path / "client"),
        **settings,
    )
    log = (tmp_path / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctaprod.cli.main", "server"], env=env, stdout=log, stderr=log
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        admin = (state / "admin-token").read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        httpx.post(
            f"{url}/api/admin/users", json={"name": "alice", "groups": ["ctao_user"]}, headers=auth
        ).raise_for_status()
        issued = httpx.post(
            f"{url}/api/admin/tokens", json={"user": "alice", "group": "ctao_user"}, headers=auth
        )
        issued.raise_for_status()
        yield Server(url, admin, issued.json()["token"], state, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
