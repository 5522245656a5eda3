"""End to end on the embedded default: `ctaprod up` as a real process, real pilot processes.

These are the "done means" of the foundation: 200 jobs from a JDL run to Done with their
outputs retrievable; a pilot killed with SIGKILL mid-job leaves its job Stalled, then
Rescheduled, then Done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import psutil
import pytest

from ctaprod.client.http import Client
from ctaprod.client.submit import submit_file
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.schemas import JobFilter
from tests.conftest import free_port

pytestmark = pytest.mark.slow

SCRIPT = """#!/bin/sh
echo "parameter $1 job $CTAPROD_JOB_ID"
echo "out $1" > out_$1.txt
"""


@pytest.fixture
def embedded(tmp_path: Path, server_db_url: str) -> Iterator[SimpleNamespace]:
    """`ctaprod up` in a subprocess, on the test session's database engine."""
    port = free_port()
    state = tmp_path / "state"
    env = dict(
        os.environ,
        CTAPROD_STATE_DIR=str(state),
        CTAPROD_PORT=str(port),
        CTAPROD_CONFIG_DIR=str(tmp_path / "client"),
        CTAPROD_JOBS__HEARTBEAT_INTERVAL="1",
        CTAPROD_JOBS__STALLED_AFTER="4",
        CTAPROD_JOBS__FAILED_AFTER="8",
        CTAPROD_AGENTS__STALLED_JOBS__INTERVAL="1",
        CTAPROD_AGENTS__PILOT_STATUS__INTERVAL="1",
        CTAPROD_AGENTS__PILOT_FACTORY__INTERVAL="1",
    )
    if not server_db_url.startswith("sqlite"):
        # A database of its own, next to the session's (same server).
        from sqlalchemy import create_engine, text

        base, _, name = server_db_url.rpartition("/")
        own = f"{name}_up"
        admin = "postgres" if base.startswith("postgresql") else "mysql"
        eng = create_engine(f"{base}/{admin}", isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {own}"))
        env["CTAPROD_DATABASE_URL"] = f"{base}/{own}"
    else:
        env.pop("CTAPROD_DATABASE_URL", None)
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", "4"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "up.log").read_text()
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "ctaprod up did not start"
        time.sleep(0.2)
    token_file = tmp_path / "client" / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    client = Client(url, token_file.read_text().strip())
    # ``proc`` may be replaced by a test that restarts `ctaprod up` (with ``env``).
    ns = SimpleNamespace(
        url=url, client=client, state=state, proc=proc, log=tmp_path / "up.log", env=env
    )
    try:
        yield ns
    finally:
        client.close()
        ns.proc.send_signal(signal.SIGTERM)
        try:
            ns.proc.wait(30)
        except subprocess.TimeoutExpired:
            ns.proc.kill()
        log.close()
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                if str(state) in " ".join(p.info["cmdline"] or []) or (
                    (p.info["environ"] or {})
                    .get("CTAPROD_PILOT_WORK_DIR", "")
                    .startswith(str(state))
                ):
                    p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if "CTAPROD_DATABASE_URL" in env:
            with eng.connect() as conn:
                drop = f"DROP DATABASE IF EXISTS {own}"
                conn.execute(text(drop + (" WITH (FORCE)" if admin == "postgres" else "")))


def wait_final(client: Client, ids: list[int], timeout: float) -> dict[int, JobStatus]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {j.job_id: j.status for j in client.iter_jobs(JobFilter(job_ids=ids), 1000)}
        if all(s in FINAL_STATES for s in statuses.values()) and len(statuses) == len(ids):
            return statuses
        if time.monotonic() > deadline:
            return statuses
        time.sleep(1)


def test_200_jobs_from_a_jdl_run_to_done(embedded: SimpleNamespace, tmp_path: Path) -> None:
    (tmp_path / "job.sh").write_text(SCRIPT)
    (tmp_path / "job.jdl").write_text(
        'JobName = "e2e_%s";\nExecutable = "job.sh";\nArguments = "%s";\n'
        "Parameters = 200;\nParameterStart = 1;\nParameterStep = 1;\nCPUTime = 600;\n"
        'InputSandbox = {"job.sh"};\nStdOutput = "StdOut";\nStdError = "StdErr";\n'
        'OutputSandbox = {"StdOut", "StdErr", "out_%s.txt"};\n'
    )
    ids = submit_file(embedded.client, tmp_path / "job.jdl")
    assert len(ids) == 200
    statuses = wait_final(embedded.client, ids, timeout=400)
    counts: dict[str, int] = {}
    for s in statuses.values():
        counts[s.value] = counts.get(s.value, 0) + 1
    assert counts == {"Done": 200}, (counts, embedded.log.read_text()[-3000:])
    for k in (0, 99, 199):
        job_id = ids[k]
        archive = tmp_path / f"{job_id}.tar.gz"
        embedded.client.download_output(job_id, archive)
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            stdout = tar.extractfile("StdOut").read().decode()  # type: ignore[union-attr]
        assert {"StdOut", "StdErr", f"out_{k + 1}.txt"} <= names
        assert f"parameter {k + 1} job {job_id}" in stdout
        assert embedded.client.job(job_id).application_status.startswith("parameter")
    assert embedded.client.pilots(limit=1000), "real pilots were used"


def test_pilot_killed_mid_job_is_stalled_rescheduled_then_done(
    embedded: SimpleNamespace, tmp_path: Path
) -> None:
    (tmp_path / "slow.sh").write_text("#!/bin/sh\nsleep ${1:-8}\necho slept\n")
    (tmp_path / "slow.jdl").write_text(
        'Executable = "slow.sh";\nArguments = "8";\nCPUTime = 600;\nInputSandbox = {"slow.sh"};\n'
    )
    [job_id] = submit_file(embedded.client, tmp_path / "slow.jdl")
    client = embedded.client
    deadline = time.monotonic() + 60
    while client.job(job_id).status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, client.job(job_id)
        time.sleep(0.3)
    pilot_id = client.job(job_id).pilot_id
    assert pilot_id is not None
    stamp = client.pilot(pilot_id).stamp
    victims = [
        p
        for p in psutil.process_iter(["cmdline", "environ"])
        if "ctaprod.pilot" in " ".join(p.info["cmdline"] or [])
        and (p.info["cmdline"] or [""])[0] != "/bin/sh"
        and (p.info["environ"] or {}).get("CTAPROD_PILOT_STAMP") == stamp
    ]
    assert len(victims) == 1, "found the pilot process of the job"
    victims[0].send_signal(signal.SIGKILL)

    seen: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        status = client.job(job_id).status
        if not seen or seen[-1] != status.value:
            seen.append(status.value)
        if status is JobStatus.DONE or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    history = [h.status.value for h in client.history(job_id)]
    assert history[-1] == "Done", (history, embedded.log.read_text()[-3000:])
    i = history.index("Stalled")
    assert history[i : i + 3] == ["Stalled", "Rescheduled", "Waiting"], history
    detail = client.job(job_id)
    assert detail.reschedule_count == 1
    assert detail.pilot_id != pilot_id
