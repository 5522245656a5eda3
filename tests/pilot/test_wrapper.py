"""The job wrapper in-process against a real server, including server outages."""

from __future__ import annotations

import contextlib
import logging
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from ctaprod.core.matching import Resource
from ctaprod.core.schemas import MatchResponse
from ctaprod.pilot.config import RetryPolicy, WrapperOptions
from ctaprod.pilot.loop import deliver_pending
from ctaprod.pilot.wrapper import FINAL_FILE, build_argv, run_job, select_outputs
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)
J = JobStatus
OPTS = WrapperOptions(
    heartbeat_interval=0.5,
    poll_interval=0.1,
    kill_grace=1.0,
    retry=RetryPolicy(max_seconds=20, initial=0.2, max_delay=1.0),
)


class Proxy:
    """A TCP forwarder in front of the live server that can go down (refusing connections)
    and come back up on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target = free_port(), target_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def up(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self.listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def down(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def admin(live_server: Any) -> Iterator[Client]:
    with Client(live_server.url, live_server.admin_token, timeout=10) as client:
        yield client


@pytest.fixture
def matched(live_server: Any, admin: Client) -> Callable[..., MatchResponse]:
    """Submit one job (``/bin/sh`` by default) and match it to a fresh pilot."""

    def make(**doc: object) -> MatchResponse:
        admin.submit(documents=[{"Executable": "/bin/sh", **doc}])
        with Client(live_server.url, live_server.pilot_token, timeout=10) as pilot:
            reg = pilot.register_pilot(f"wrap{time.monotonic_ns()}", "LOCAL.localhost.org")
        with Client(live_server.url, reg.session_token, timeout=10) as session:
            found = session.match(
                reg.pilot_id, Resource(site="LOCAL.localhost.org", cpu_time_left=200000)
            )
        assert found is not None
        return found

    return make


def factory_for(url: str) -> Callable[[str], Client]:
    return lambda token: Client(url, token, timeout=5)


def members(admin: Client, job_id: int, tmp_path: Path) -> dict[str, bytes]:
    dest = tmp_path / "out.tar.gz"
    admin.download_output(job_id, dest)
    with tarfile.open(dest) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_run_job_done(
    live_server: Any,
    admin: Client,
    matched: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ctaprod.pilot")
    match = matched(Arguments="-c 'echo $CTAPROD_JOB_ID; echo bye'")
    outcome = run_job(factory_for(live_server.url), match, tmp_path, OPTS)
    assert (outcome.status, outcome.minor_status, outcome.exit_code, outcome.delivered) == (
        J.DONE,
        "Execution Complete",
        0,
        True,
    )
    assert "final status Done delivered" in caplog.text
    assert not (tmp_path / f"job_{match.job_id}").exists()  # removed once all is safe
    assert members(admin, match.job_id, tmp_path)["std.out"] == f"{match.job_id}\nbye\n".encode()
    assert admin.job(match.job_id).application_status == "bye"


def test_output_sandbox_links_and_globs(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    script = (
        "echo in > inside.txt; ln -s inside.txt link.txt; ln -s /etc/hostname out.txt; "
        "mkdir sub; echo s > sub/f; ln -s /etc sub/escape; ln -s .. sub/up; "
        "echo a > a.dat; echo b > b.dat"
    )
    match = matched(
        Arguments=f"-c '{script}'", OutputSandbox=["link.txt", "out.txt", "sub", "*.dat", "none*"]
    )
    outcome = run_job(factory_for(live_server.url), match, tmp_path, OPTS)
    assert outcome.status is J.DONE
    got = members(admin, match.job_id, tmp_path)
    assert got["link.txt"] == b"in\n"
    assert got["sub/f"] == b"s\n"
    assert (got["a.dat"], got["b.dat"]) == (b"a\n", b"b\n")
    assert "out.txt" not in got
    assert not [n for n in got if n.startswith("sub/escape") or n.startswith("sub/up/sub")]
    params = admin.job(match.job_id).parameters
    assert params["OutputSandboxProblems"] == "missing none*; refused out.txt"


def test_select_outputs(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    (tmp_path / FINAL_FILE).write_text("{}")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert select_outputs(["x", "LFN:/a/b", "dangling", "*", "../y"], tmp_path) == (
        ["x"],
        ["dangling"],
        ["../y"],
    )


def test_build_argv(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    assert build_argv("run.sh", "a 'b c'", tmp_path) == ["./run.sh", "a", "b c"]
    assert (tmp_path / "run.sh").stat().st_mode & 0o100
    assert build_argv("echo", "", tmp_path) == ["echo"]
    assert build_argv("/bin/sh", "-c x", tmp_path) == ["/bin/sh", "-c", "x"]


def test_retry_policy() -> None:
    policy = RetryPolicy(max_seconds=5, initial=0.01, max_delay=0.02)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ServerUnreachable("down")
        if len(calls) == 3:
            raise ApiError(503, "unavailable", "busy")
        return "ok"

    assert policy.call(flaky, "flaky") == "ok"
    assert len(calls) == 4

    def refused() -> None:
        calls.append(1)
        raise ApiError(403, "forbidden", "no")

    with pytest.raises(ApiError):
        policy.call(refused, "refused")
    assert len(calls) == 5  # not retried
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    with pytest.raises(ServerUnreachable):
        RetryPolicy(max_seconds=30, initial=10).call(flaky_forever, "down", stop)
    assert time.monotonic() - start < 1


def flaky_forever() -> None:
    raise ServerUnreachable("down")


def test_job_killed_before_start_is_left_alone(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    match = matched(Arguments="-c 'echo ran > ran.txt'")
    admin.kill([match.job_id])
    outcome = run_job(factory_for(live_server.url), match, tmp_path, OPTS)
    assert (outcome.status, outcome.delivered) == (None, False)
    assert not (tmp_path / f"job_{match.job_id}" / "ran.txt").exists()
    assert admin.job(match.job_id).status is J.KILLED


def test_rescheduled_job_is_abandoned(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    match = matched(Arguments="-c 'sleep 30'")
    timer = threading.Timer(1.0, admin.reschedule, args=([match.job_id],))
    timer.start()
    start = time.monotonic()
    outcome = run_job(factory_for(live_server.url), match, tmp_path, OPTS)
    timer.join()
    assert time.monotonic() - start < 10  # the heartbeat got 403 and the payload was killed
    assert outcome.status is None
    assert "heartbeat refused" in outcome.minor_status
    assert admin.job(match.job_id).status is J.WAITING


def test_final_status_survives_outage(
    live_server: Any,
    admin: Client,
    matched: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ctaprod.pilot")
    proxy = Proxy(int(live_server.url.rsplit(":", 1)[1]))
    proxy.up()
    match = matched(Arguments="-c 'sleep 1.5; echo finished'")

    def outage() -> None:
        deadline = time.monotonic() + 10
        while admin.job(match.job_id).status is not J.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.down()
        time.sleep(3.0)  # the payload ends during the outage
        proxy.up()

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        outcome = run_job(factory_for(proxy.url), match, tmp_path, OPTS)
    finally:
        thread.join()
        proxy.down()
    assert (outcome.status, outcome.delivered) == (J.DONE, True)
    job = admin.job(match.job_id)
    assert (job.status, job.application_status) == (J.DONE, "finished")
    assert members(admin, match.job_id, tmp_path)["std.out"] == b"finished\n"
    assert "retrying" in caplog.text


def test_final_status_kept_until_delivered(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    proxy = Proxy(int(live_server.url.rsplit(":", 1)[1]))
    proxy.up()
    match = matched(Arguments="-c 'sleep 2; exit 3'")
    short = WrapperOptions(
        heartbeat_interval=0.5,
        poll_interval=0.1,
        retry=RetryPolicy(max_seconds=1.0, initial=0.2, max_delay=0.5),
    )

    def down_once_running() -> None:
        """The server goes away once it has the job Running (a fixed delay raced the report
        on a loaded machine), and stays away until the test brings it back."""
        deadline = time.monotonic() + 20
        while admin.job(match.job_id).status is not J.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.down()

    threading.Thread(target=down_once_running, daemon=True).start()
    outcome = run_job(factory_for(proxy.url), match, tmp_path, short)
    assert (outcome.status, outcome.exit_code, outcome.delivered) == (J.FAILED, 3, False)
    kept = tmp_path / f"job_{match.job_id}" / FINAL_FILE
    assert kept.is_file()
    assert kept.stat().st_mode & 0o077 == 0
    assert [p.name for p in kept.parent.iterdir()] == [FINAL_FILE]  # all else is gone
    assert admin.job(match.job_id).status is J.RUNNING
    proxy.up()
    try:
        assert deliver_pending(factory_for(proxy.url), tmp_path, short.retry) == 1
    finally:
        proxy.down()
    assert not kept.parent.exists()  # delivered: the rest of the job directory went too
    job = admin.job(match.job_id)
    assert (job.status, job.exit_code, job.minor_status) == (
        J.FAILED,
        3,
        "Application exited with code 3",
    )
