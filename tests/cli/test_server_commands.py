"""Server-side commands that finish on their own: ``db upgrade``, ``agents --once``, usage."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from ctaprod.cli.main import app
from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from tests.conftest import free_port


@pytest.fixture
def server_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SQLite state directory in the environment, as an operator would set it."""
    state = tmp_path / "state"
    monkeypatch.setenv("CTAPROD_STATE_DIR", str(state))
    monkeypatch.setenv("CTAPROD_SECRET_KEY", "cli-test-" + "k" * 40)
    monkeypatch.setenv("CTAPROD_CONFIG_DIR", str(tmp_path / "client"))
    for name in ("CTAPROD_DATABASE_URL", "CTAPROD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return state


def test_db_upgrade_is_idempotent(server_env: Path) -> None:
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "Database schema at revision" in result.stdout
    assert (server_env / "ctaprod.db").is_file()


def test_agents_once(server_env: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["agents", "--once", "--name", "stalled_jobs"])
    assert result.exit_code == 0, result.output


def test_bad_settings_are_usage_errors(
    server_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["server", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('port = "eighty"\n')
    result = runner.invoke(app, ["db", "upgrade", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid settings: port")
    replicas = runner.invoke(app, ["agents", "--replica", "2", "--replicas", "2"])
    assert replicas.exit_code == 2


def _admin_tokens(state: Path) -> list[str]:
    from ctaprod.core.settings import Settings
    from ctaprod.logic.admin import list_tokens
    from ctaprod.server.services import build_services

    services = build_services(Settings(state_dir=state), migrate_db=False)
    try:
        return [t.jti for t in list_tokens(services.ctx, "admin")]
    finally:
        services.ctx.db.dispose()


def test_db_upgrade_gives_the_first_admin_token_once(server_env: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    token_file = server_env / "admin-token"
    assert f"the first admin token is in {token_file}" in first.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in first.output
    [jti] = _admin_tokens(server_env)

    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0, again.output
    assert "admin token" not in again.output
    assert token_file.read_text().strip() == token
    assert _admin_tokens(server_env) == [jti]  # no second credential


def _start_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "server"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _until_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_server_on_a_fresh_database_gives_the_first_admin_token(
    server_env: Path, tmp_path: Path
) -> None:
    """`ctaprod server` without `db upgrade` first: the credential is there and works; the
    next start gives none and does not show the old one."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CTAPROD_PORT=str(port), CTAPROD_HOST="127.0.0.1")
    token_file = server_env / "admin-token"
    for start in range(2):
        log = tmp_path / f"server{start}.log"
        proc = _start_server(env, log)
        try:
            _until_healthy(url, proc, log)
            token = token_file.read_text().strip()
            with Client(url, token) as client:
                me = client.whoami()
                assert (me.user, me.group) == ("admin", "ctao_admin")
                assert len(client.tokens("admin")) == 1
        finally:
            _stop(proc)
        output = log.read_text()
        assert token not in output
        assert (f"the first admin token is in {token_file}" in output) == (start == 0)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def _pids(state: Path) -> list[int]:
    return [int(p.read_text()) for p in state.glob("pilots/*/*/pid")]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.mark.timeout(180)
def test_agents_shutdown_cancels_its_local_pilots(
    live_server: Any, settings: Any, tmp_path: Path
) -> None:
    """`ctaprod agents` as a real process submits a Local CE pilot that runs a job; on
    SIGTERM the agents stop and no pilot (nor payload) process is left."""
    state = tmp_path / "agents-state"
    queue = {
        "ce_type": "local",
        "ce": "localhost",
        "site": "LOCAL.localhost.org",
        "max_waiting": 1,
        "max_total": 1,
        "options": {"slots": 1},
        "sandbox": "none",  # the payload writes its pid outside its job directory
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAPROD")}
    env.update(
        CTAPROD_STATE_DIR=str(state),
        CTAPROD_DATABASE_URL=settings.db_url(),
        CTAPROD_SECRET_KEY=settings.secret_key,
        CTAPROD_PUBLIC_URL=live_server.url,
        CTAPROD_QUEUES=json.dumps({"local": queue}),
        CTAPROD_AGENTS__PILOT_FACTORY__INTERVAL="1",
        CTAPROD_CONFIG_DIR=str(tmp_path / "client"),
    )
    with Client(live_server.url, live_server.admin_token, timeout=10) as admin:
        payload = tmp_path / "payload.pid"
        (job_id,) = admin.submit(
            documents=[
                {"Executable": "/bin/sh", "Arguments": f"-c 'echo $$ > {payload}; sleep 1000'"}
            ]
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "agents", "--name", "pilot_factory"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pids: list[int] = []
        try:
            _wait(lambda: admin.job(job_id).status is JobStatus.RUNNING, 120, "job Running")
            pids = _pids(state)
            assert pids
            assert not any(_gone(pid) for pid in pids)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
            leftovers = [*pids, int(payload.read_text())] if payload.is_file() else pids
            for pid in leftovers:  # the old code left them running
                with contextlib.suppress(psutil.NoSuchProcess):
                    for p in [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]:
                        p.kill()
        assert proc.returncode == 0, out
        assert "cancelled 1 local pilot(s)" in out
        assert all(_gone(pid) for pid in pids), out
        assert _wait(lambda: _gone(int(payload.read_text())), 30, "payload gone")
