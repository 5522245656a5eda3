"""End-to-end pilot tests: a real server (``live_server``) and real pilot processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ctaprod.client.http import Client
from ctaprod.client.submit import submit_file
from ctaprod.core.job_states import JobStatus
from ctaprod.core.schemas import JobFilter
from ctaprod.pilot.__main__ import main, parse_config
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(90)
J = JobStatus


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Heartbeats every second, so that kills reach the payload quickly."""
    settings.jobs.heartbeat_interval = 1.0
    return settings


@pytest.fixture
def admin(live_server: Any) -> Iterator[Client]:
    with Client(live_server.url, live_server.admin_token, timeout=10) as client:
        yield client


def pilot_env(live_server: Any, work: Path, **extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAPROD")}
    env.update(
        CTAPROD_PILOT_URL=live_server.url,
        CTAPROD_PILOT_TOKEN=live_server.pilot_token,
        CTAPROD_PILOT_WORK_DIR=str(work),
        CTAPROD_PILOT_CPU_TIME="200000",
        CTAPROD_PILOT_MAX_EMPTY_MATCHES="1",
        CTAPROD_PILOT_EMPTY_MATCH_SLEEP="0.1",
        CTAPROD_PILOT_RETRY_INITIAL="0.2",
        CTAPROD_PILOT_KILL_GRACE="1",
        CTAPROD_PILOT_STAMP=f"test{time.monotonic_ns()}",
    )
    env.update({f"CTAPROD_PILOT_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def start_pilot(live_server: Any, work: Path, *args: str, **extra: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ctaprod.pilot", *args],
        env=pilot_env(live_server, work, **extra),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def run_pilot(live_server: Any, work: Path, *args: str, **extra: object) -> tuple[int, str]:
    proc = start_pilot(live_server, work, *args, **extra)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def output_members(admin: Client, job_id: int, tmp_path: Path) -> dict[str, bytes]:
    dest = tmp_path / f"out_{job_id}.tar.gz"
    admin.download_output(job_id, dest)
    with tarfile.open(dest) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def submit(admin: Client, **doc: object) -> int:
    return admin.submit(documents=[{"Executable": "/bin/sh", **doc}])[0]


def payload_pid(work: Path, job_id: int) -> int:
    """The host pid of the payload that wrote its ``$$`` to ``payload.pid`` (in a bwrap
    sandbox ``$$`` is its pid in the sandbox's own PID namespace: the last of ``NSpid``)."""
    path = work / f"job_{job_id}" / "payload.pid"
    inner = wait_for(lambda: path.is_file() and path.read_text().strip(), what="payload")

    def find() -> int | None:
        for p in psutil.process_iter():
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
                if p.cwd() != str(path.parent):
                    continue
            except (OSError, psutil.Error):
                continue
            nspid = next(
                (ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid")), []
            )
            if nspid and nspid[-1] == inner:
                return p.pid
        return None

    return int(wait_for(find, what="payload process"))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


SLEEPER = "-c 'echo $$ > payload.pid; echo started; exec sleep 60'"


def test_echo_job_is_done_with_output_sandbox(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    ok = submit(admin, Arguments="-c 'echo first line; echo hello world; echo oops >&2'")
    bad = submit(admin, Arguments="-c 'echo about to fail; exit 3'")
    code, out = run_pilot(live_server, tmp_path / "w")
    assert code == 0, out
    job = admin.job(ok)
    assert (job.status, job.minor_status, job.application_status, job.exit_code) == (
        J.DONE,
        "Execution Complete",
        "hello world",
        0,
    )
    assert job.wall_seconds is not None
    members = output_members(admin, ok, tmp_path)
    assert members["std.out"] == b"first line\nhello world\n"
    assert members["std.err"] == b"oops\n"
    failed = admin.job(bad)
    assert (failed.status, failed.exit_code, failed.minor_status, failed.application_status) == (
        J.FAILED,
        3,
        "Application exited with code 3",
        "about to fail",
    )
    assert not list((tmp_path / "w").glob("job_*/final_status.json"))


def test_input_sandbox_script_runs(live_server: Any, admin: Client, tmp_path: Path) -> None:
    script = tmp_path / "testJob.sh"
    script.write_text(
        '#!/bin/sh\necho "job $CTAPROD_JOB_ID in $(basename $PWD)"\n'
        'echo "arg=$1 env=$MYVAR token=${CTAPROD_PILOT_TOKEN:-none}"\n'
    )
    script.chmod(0o644)  # the wrapper makes it executable
    jdl = tmp_path / "job.jdl"
    jdl.write_text(
        '[\n  Executable = "testJob.sh";\n  Arguments = "42";\n'
        '  InputSandbox = {"testJob.sh"};\n  Environment = {"MYVAR=x y"};\n]\n'
    )
    (job_id,) = submit_file(admin, jdl)
    code, out = run_pilot(live_server, tmp_path / "w", "--once-job")
    assert code == 0, out
    assert "one job done (--once-job)" in out
    # a search, not admin.job(): GET /api/jobs/{id} cannot render Environment as JDL (yet)
    (job,) = admin.search(JobFilter(job_ids=[job_id])).jobs
    assert job.status is J.DONE, out
    assert job.application_status == "arg=42 env=x y token=none"
    assert output_members(admin, job_id, tmp_path)["std.out"].startswith(
        f"job {job_id} in job_{job_id}\n".encode()
    )


def test_missing_output_file_still_done(live_server: Any, admin: Client, tmp_path: Path) -> None:
    job_id = submit(
        admin,
        Arguments="-c 'echo data > result.txt; echo ok'",
        OutputSandbox=["result.txt", "missing.dat"],
    )
    code, out = run_pilot(live_server, tmp_path / "w")
    assert code == 0, out
    job = admin.job(job_id)
    assert (job.status, job.minor_status) == (J.DONE, "Execution Complete")
    assert job.parameters["OutputSandboxProblems"] == "missing missing.dat"
    assert output_members(admin, job_id, tmp_path)["result.txt"] == b"data\n"


def test_kill_reaches_payload_at_next_heartbeat(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    job_id = submit(admin, Arguments=SLEEPER)
    work = tmp_path / "w"
    proc = start_pilot(live_server, work)
    try:
        pid = payload_pid(work, job_id)
        wait_for(lambda: admin.job(job_id).status is J.RUNNING, what="Running")
        admin.kill([job_id])
        wait_for(lambda: gone(pid), timeout=10, what="payload killed")
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    # The killed job's token is void: the heartbeat is refused and the payload stopped.
    assert "being killed" in out
    job = admin.job(job_id)
    assert (job.status, job.minor_status) == (J.KILLED, "Marked for termination")
    assert [h.status for h in admin.history(job_id)][-1] is J.KILLED


def test_wall_clock_limit(live_server: Any, admin: Client, tmp_path: Path) -> None:
    job_id = submit(admin, Arguments="-c 'echo sleeping; sleep 30'", CPUTime=1)
    start = time.monotonic()
    code, out = run_pilot(live_server, tmp_path / "w", wall_margin=0)  # limit 2 s
    assert code == 0, out
    assert time.monotonic() - start < 20
    job = admin.job(job_id)
    assert (job.status, job.minor_status, job.application_status) == (
        J.FAILED,
        "Wall-clock limit exceeded",
        "sleeping",
    )


def test_pilot_stops_after_empty_matches(live_server: Any, admin: Client, tmp_path: Path) -> None:
    env_stamp = "emptypilot1"
    code, out = run_pilot(live_server, tmp_path / "w", "--max-empty-matches", "2", stamp=env_stamp)
    assert code == 0, out
    (pilot,) = [p for p in admin.pilots() if p.stamp == env_stamp]
    assert (pilot.status, pilot.status_reason, pilot.jobs_done) == (
        "Done",
        "no more matching jobs after 2 attempts",
        0,
    )
    log = admin.pilot_log(pilot.pilot_id)
    assert f"registered as pilot {pilot.pilot_id}" in log
    assert "no job (1/2)" in log
    # the pilot made its work directory and the server has its log: nothing is left
    assert not (tmp_path / "w").exists()


def test_pilot_sigkill_leaves_job_running_and_kills_payload(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    job_id = submit(admin, Arguments=SLEEPER)
    work = tmp_path / "w"
    proc = start_pilot(live_server, work)
    try:
        pid = payload_pid(work, job_id)
        wait_for(lambda: admin.job(job_id).status is J.RUNNING, what="Running")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        wait_for(lambda: gone(pid), timeout=10, what="payload gone")
    finally:
        proc.kill()
    assert admin.job(job_id).status is J.RUNNING  # the stalled-jobs agent takes it from here


def test_sigterm_stops_the_pilot_gracefully(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    job_id = submit(admin, Arguments=SLEEPER)
    other = submit(admin, Arguments="-c 'echo never'")
    work = tmp_path / "w"
    proc = start_pilot(live_server, work, stamp="termpilot")
    try:
        pid = payload_pid(work, job_id)  # the oldest job is matched first
        wait_for(lambda: admin.job(job_id).status is J.RUNNING, what="Running")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert gone(pid)
    (pilot,) = [p for p in admin.pilots() if p.stamp == "termpilot"]
    assert (pilot.status, pilot.status_reason, pilot.jobs_done) == ("Done", "stopped by SIGTERM", 1)
    job = admin.job(job_id)
    assert (job.status, job.minor_status, job.application_status) == (
        J.FAILED,
        "Killed (pilot stopping)",
        "started",
    )
    assert admin.job(other).status is J.WAITING  # no more matching after the signal


def test_unreachable_server_at_start(live_server: Any, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    code, out = run_pilot(live_server, tmp_path / "w", url=dead, startup_retry_seconds=1)
    assert code == 2, out
    assert "cannot register" in out
    assert time.monotonic() - start < 20


def test_cli_overrides_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTAPROD_PILOT_SITE", "ENV.site.org")
    monkeypatch.setenv("CTAPROD_PILOT_TAGS", "GPU, Fast")
    monkeypatch.setenv("CTAPROD_PILOT_CPU_TIME", "1000")
    token = tmp_path / "token"
    token.write_text("secret\n")
    config, level, _ = parse_config(
        ["--site", "CLI.site.org", "--token-file", str(token), "--once-job", "--log-level", "DEBUG"]
    )
    assert (config.site, config.tags, config.cpu_time, config.token) == (
        "CLI.site.org",
        ["GPU", "Fast"],
        1000,
        "secret",
    )
    assert config.once_job
    assert level == "DEBUG"
    assert config.resource(500).cpu_time_left == 500
    assert "secret" not in repr(config)
    assert main(["--processors", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--no-such-option"])
