"""A payload's whole process tree ends with its job: real pilots against a real server.

Each payload starts a ``setsid`` child in a subshell that exits at once, after the
watchdog's first look: the child leaves the payload's session and its parent, so only the
supervisor (a child subreaper) can still find it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from tests.pilot.test_loop import (
    gone,
    payload_pid,
    run_pilot,
    start_pilot,
    submit,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)
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


def escaping(pid_file: Path, then: str = "echo finished") -> str:
    """Arguments of a /bin/sh payload whose ``setsid`` child writes its pid to ``pid_file``."""
    return (
        f"-c 'echo $$ > payload.pid; sleep 0.3; (setsid sleep 1000 & echo $! > {pid_file}); {then}'"
    )


def child_of(pid_file: Path) -> psutil.Process:
    text = wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), what="child")
    return psutil.Process(int(text))


@contextlib.contextmanager
def no_leftover(pid_file: Path) -> Any:
    """Kill the setsid child at the end whatever happens (old code leaves it running)."""
    try:
        yield
    finally:
        if pid_file.is_file():
            with contextlib.suppress(psutil.NoSuchProcess, ValueError):
                child = psutil.Process(int(pid_file.read_text()))
                if child.name() == "sleep":
                    child.kill()


def test_setsid_child_is_gone_when_the_job_ends(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    job_id = submit(admin, Arguments=escaping(pid_file))
    with no_leftover(pid_file):
        code, out = run_pilot(live_server, tmp_path / "w", sandbox="none")
        assert code == 0, out
        assert gone(int(pid_file.read_text())), "the setsid child outlived its job"
    job = admin.job(job_id)
    assert (job.status, job.application_status) == (J.DONE, "finished")


def test_setsid_child_is_gone_when_the_job_is_killed(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    job_id = submit(admin, Arguments=escaping(pid_file, "exec sleep 1000"))
    work = tmp_path / "w"
    with no_leftover(pid_file):
        proc = start_pilot(live_server, work, sandbox="none")
        try:
            pid = payload_pid(work, job_id)
            child = child_of(pid_file)
            wait_for(lambda: admin.job(job_id).status is J.RUNNING, what="Running")
            admin.kill([job_id])
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert gone(pid)
        assert wait_for(lambda: gone(child.pid), timeout=10, what="setsid child gone")
    assert admin.job(job_id).status is J.KILLED


def test_setsid_child_is_gone_when_the_pilot_is_sigkilled(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    job_id = submit(admin, Arguments=escaping(pid_file, "exec sleep 1000"))
    work = tmp_path / "w"
    with no_leftover(pid_file):
        proc = start_pilot(live_server, work, sandbox="none")
        try:
            pid = payload_pid(work, job_id)
            child = child_of(pid_file)
            wait_for(lambda: admin.job(job_id).status is J.RUNNING, what="Running")
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        finally:
            proc.kill()
        assert wait_for(lambda: gone(pid), timeout=15, what="payload gone")
        assert wait_for(lambda: gone(child.pid), timeout=15, what="setsid child gone")
    assert admin.job(job_id).status is J.RUNNING  # the stalled-jobs agent takes it from here


ADOPTER = """
import os, subprocess, time
from ctaprod.pilot.reaper import descendants, set_subreaper
assert set_subreaper() is None
subprocess.Popen(["sh", "-c", "(setsid sleep 30 &); exec sleep 30"])
deadline = time.monotonic() + 30
while len(descendants(os.getpid())) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
found = descendants(os.getpid())
parents = [int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) for pid in found]
for pid in found:
    os.kill(pid, 9)
print(len(found), all(parent == os.getpid() for parent in parents))
"""


def test_subreaper_adopts_orphans_and_finds_them() -> None:
    # in a process of its own: being a subreaper would change this test process for good
    out = subprocess.run([sys.executable, "-c", ADOPTER], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # the payload's root and the orphaned setsid sleep, both children of the subreaper now
    assert out.stdout.split() == ["2", "True"]
