"""Recovery that waits for the world, with real processes: ``ctaprod server`` and
``ctaprod agents`` processes and a real pilot on the test session's database.

- an executor SIGKILLed while it holds requests: another executor releases them once their
  lease passed and executes them (a frozen storage server keeps the first one busy);
- a dead agent replica's share is done by the surviving replica;
- ``ctaprod agents --once`` with a failing agent exits non-zero;
- a server down longer than the failed window, restarted: the job whose payload finished
  during the outage ends Done (not Rescheduled).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ctaprod.client.http import Client
from ctaprod.client.submit import submit_file
from ctaprod.core.requests import RequestSpec
from ctaprod.core.storage import se_path
from ctaprod.db.agents import AgentDB
from ctaprod.logic import catalog
from ctaprod.logic import requests as L
from tests.agents.helpers import ALICE
from tests.conftest import free_port

pytestmark = pytest.mark.slow
TIMEOUT = 180.0  # generous: a shared, loaded 2-core machine


def until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> float:
    """Wait for ``predicate``; the seconds it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)
    return time.monotonic() - start


class Processes:
    """``ctaprod`` processes of one test (killed at the end), with their logs."""

    def __init__(self, tmp_path: Path, settings: Any) -> None:
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CTAPROD_", "PYTEST"))}
        self.env.update(
            CTAPROD_DATABASE_URL=settings.database_url,
            CTAPROD_SECRET_KEY=settings.secret_key,
            CTAPROD_STATE_DIR=str(settings.state_dir),
            CTAPROD_CONFIG_DIR=str(tmp_path / "client"),
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture
def procs(tmp_path: Path, services: Any) -> Iterator[Processes]:
    p = Processes(tmp_path, services.ctx.settings)
    try:
        yield p
    finally:
        p.stop_all()


def alive_replicas(services: Any, name: str) -> list[int]:
    since = datetime.now(UTC) - timedelta(seconds=2)
    with services.ctx.db.read() as conn:
        return AgentDB().live_replicas(conn, name, since)


EXECUTOR = dict(
    CTAPROD_AGENTS__REQUEST_EXECUTOR__INTERVAL="0.5",
    CTAPROD_LIVENESS__AGENT_BEAT_SECONDS="0.5",
    CTAPROD_LIVENESS__MISSED_BEATS="3",
)


def executor(procs: Processes, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    cli = ("ctaprod.cli.main", "agents", "--name", "request_executor")
    return procs.start(name, *cli, *args, **{**EXECUTOR, **env})


def remove_request(services: Any, lfn: str) -> int:
    spec = RequestSpec.model_validate(
        {"operations": [{"type": "RemoveFile", "files": [{"lfn": lfn}]}]}
    )
    return L.create_request(services.ctx, ALICE, spec)


# --- request leases ----------------------------------------------------------------------
def test_executor_killed_holding_requests_they_are_executed_by_another(
    procs: Processes, services: Any, tokens: Any, tmp_path: Path
) -> None:
    """Before, a dead executor's requests stayed Assigned for a hard-coded hour."""
    from tests.resources.servers import start_s3

    s3 = start_s3()
    try:
        _executor_killed(procs, services, s3, tmp_path)
    finally:
        os.kill(s3.process.pid, signal.SIGCONT)
        s3.cleanup()


def _executor_killed(procs: Processes, services: Any, s3: Any, tmp_path: Path) -> None:
    ses = {
        "S3": {
            "plugin": "s3",
            "endpoint": s3.endpoint,
            "base_path": f"lease-{tmp_path.name}",
            "site": "LCG.C.org",
            "options": {
                "bucket": s3.bucket,
                "access_key": s3.access_key,
                "secret_key": s3.secret_key,
                "max_attempts": 1,
                "read_timeout": 600,
            },
        }
    }
    ctx = services.ctx
    from ctaprod.core.settings import StorageElementConfig

    ctx.settings.storage_elements = {k: StorageElementConfig(**v) for k, v in ses.items()}
    data = b"cherenkov" * 1000
    lfn = "/ctao/user/alice/lease/out.dat"
    ctx.storage("S3").put(se_path(lfn), io.BytesIO(data))
    checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    spec = RequestSpec.model_validate(
        {
            "operations": [
                {
                    "type": "RegisterFile",
                    "arguments": {"se": "S3"},
                    "files": [{"lfn": lfn, "size": len(data), "checksum": checksum}],
                }
            ]
        }
    )
    os.kill(s3.process.pid, signal.SIGSTOP)  # the storage hangs: the executor is held up
    rid = L.create_request(ctx, ALICE, spec)
    env = {"CTAPROD_STORAGE_ELEMENTS": json.dumps(ses), "CTAPROD_DATA__REQUEST_LEASE_SECONDS": "4"}
    first = executor(procs, "executor-1", **env)

    def held_by(proc: subprocess.Popen[bytes]) -> bool:
        info = L.get_request(ctx, ALICE, rid)
        return info.status == "Assigned" and f":{proc.pid}/" in info.assigned_by

    until(lambda: held_by(first), "the first executor claims the request")
    first.kill()  # SIGKILL while it holds the request
    first.wait(30)
    killed = time.monotonic()
    os.kill(s3.process.pid, signal.SIGCONT)
    second = executor(procs, "executor-2", **env)
    until(
        lambda: L.get_request(ctx, ALICE, rid).status == "Done",
        f"another executor executes it\n{procs.log('executor-2')}",
    )
    assert time.monotonic() - killed < 60  # lease 4 s, then the next cycle
    assert f":{second.pid}/" in L.get_request(ctx, ALICE, rid).assigned_by
    info = catalog.get_files(ctx, [lfn])[lfn]
    assert (info.size, sorted(info.replicas)) == (len(data), ["S3"])


# --- live replicas -----------------------------------------------------------------------
def test_a_dead_replicas_share_is_processed_by_the_survivor(
    procs: Processes, services: Any
) -> None:
    """Before, replica r of n was fixed at launch: the dead replica's IDs were never done."""
    survivor = executor(procs, "replica-0", "--replica", "0", "--replicas", "2")
    doomed = executor(procs, "replica-1", "--replica", "1", "--replicas", "2")
    until(
        lambda: alive_replicas(services, "request_executor") == [0, 1],
        f"both replicas beat\n{procs.log('replica-0')}",
    )
    doomed.kill()
    doomed.wait(30)
    ids = [remove_request(services, f"/ctao/user/alice/gone/{i}") for i in range(8)]
    assert {i % 2 for i in ids} == {0, 1}

    def all_done() -> bool:
        return all(L.get_request(services.ctx, ALICE, i).status == "Done" for i in ids)

    until(all_done, f"the survivor does every request\n{procs.log('replica-0')}")
    for rid in ids:
        assert f":{survivor.pid}/" in L.get_request(services.ctx, ALICE, rid).assigned_by


# --- once ---------------------------------------------------------------------------------
def test_agents_once_with_a_failing_agent_exits_non_zero(procs: Processes, services: Any) -> None:
    """Before, --once logged the error and exited 0."""
    queues = json.dumps({"broken": {"ce_type": "no-such-batch-system"}})
    cmd = ("ctaprod.cli.main", "agents", "--once", "--name", "pilot_status")
    proc = procs.start("once", *cmd, CTAPROD_QUEUES=queues)
    assert proc.wait(TIMEOUT) == 1, procs.log("once")
    assert "agent cycle failed: pilot_status: " in procs.log("once")
    assert "broken" in procs.log("once")
    ok = procs.start("once-ok", "ctaprod.cli.main", "agents", "--once", "--name", "job_cleaning")
    assert ok.wait(TIMEOUT) == 0, procs.log("once-ok")


# --- a server outage longer than the failed window ----------------------------------------
SCRIPT = "#!/bin/sh\necho started\nsleep 5\necho finished > result.txt\necho done\n"


def test_a_server_down_longer_than_the_failed_window_loses_no_finished_payload(
    procs: Processes, services: Any, tokens: Any, tmp_path: Path
) -> None:
    """Before, the stalled-job agent rescheduled the Running job during the outage (its
    silence counted across it), and the payload that finished meanwhile was thrown away."""
    admin, pilot_token = tokens
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    windows = dict(
        CTAPROD_JOBS__HEARTBEAT_INTERVAL="1",
        CTAPROD_JOBS__STALLED_AFTER="5",
        CTAPROD_JOBS__FAILED_AFTER="10",
        CTAPROD_LIVENESS__SERVER_BEAT_SECONDS="0.5",
        CTAPROD_LIVENESS__MISSED_BEATS="2",
        CTAPROD_AGENTS__STALLED_JOBS__INTERVAL="0.5",
    )
    server_cmd = ("ctaprod.cli.main", "server", "--port", str(port))

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    server = procs.start("server-1", *server_cmd, **windows)
    until(healthy, f"the server starts\n{procs.log('server-1')}")
    procs.start("agents", "ctaprod.cli.main", "agents", "--name", "stalled_jobs", **windows)
    # The payload leaves marks outside its job directory (the wrapper removes that directory
    # once the job is over, possibly before this test looks into it): when it starts and when
    # it ends.
    started, mark = tmp_path / "payload.started", tmp_path / "payload.finished"
    (tmp_path / "job.sh").write_text(
        SCRIPT.replace("echo started", f"touch {started}\necho started") + f"touch {mark}\n"
    )
    jdl = tmp_path / "job.jdl"
    jdl.write_text(
        '[\n  Executable = "job.sh";\n  InputSandbox = {"job.sh"};\n  StdOutput = "StdOut";\n'
        '  OutputSandbox = {"StdOut", "result.txt"};\n  CPUTime = 300;\n]\n'
    )
    client = Client(url, admin)
    try:
        [job_id] = submit_file(client, jdl)
        pilot_args = (
            "ctaprod.pilot", "--url", url, "--token", pilot_token, "--site", "LOCAL.x.org",
            "--once-job", "--max-empty-matches", "300", "--empty-match-sleep", "0.2",
            "--heartbeat-interval", "1", "--work-dir", str(tmp_path / "pilot"),
            "--sandbox", "none",  # the payload marks its progress outside its job directory
        )  # fmt: skip
        procs.start("pilot", *pilot_args, CTAPROD_PILOT_RETRY_MAX_DELAY="0.5")
        until(lambda: client.job(job_id).status == "Running", "the job runs")
        # Running is reported before the input sandbox is downloaded: a server killed in
        # between fails the download (the job fails, the payload never starts; seen 2 in 5
        # runs when this test killed it at Running). Kill it once the payload runs.
        until(started.exists, f"the payload starts\n{procs.log('pilot')}")
        server.kill()  # the server goes away for longer than the failed window
        server.wait(30)
        down = time.monotonic()
        time.sleep(0.5)
        assert not healthy()
        until(mark.exists, "the payload finishes during the outage")
        # The outage lasts past the failed window (10 s; before, the job was rescheduled by
        # then) with the stalled-job agent running all along.
        time.sleep(max(0.0, 17 - (time.monotonic() - down)))
        procs.start("server-2", *server_cmd, **windows)
        until(healthy, f"the server restarts\n{procs.log('server-2')}")
        until(
            lambda: client.job(job_id).status in ("Done", "Failed", "Waiting", "Rescheduled"),
            f"the job ends\n{procs.log('pilot')}",
        )
        job = client.job(job_id)
        statuses = [h.status for h in client.history(job_id)]
        assert job.status == "Done", (job, statuses, procs.log("agents"))
        assert "Rescheduled" not in statuses
        assert job.reschedule_count == 0
        # (Stalled then back to Running is allowed: a pilot slower than the stalled window
        # after the restart, on a loaded machine, is not lost work.)
    finally:
        client.close()
