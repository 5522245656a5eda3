"""Job attempts cannot collide over their outputs (ADR 0004), against a real server, real
POSIX SEs and real wrapper runs (in-process as in test_wrapper.py, and one in a process of
its own that is SIGKILLed).

A "gated" POSIX SE holds an upload at its start until the test opens the gate, so that a
job can be rescheduled or killed while its wrapper uploads, without any timing guess.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from ctaprod.client.errors import ApiError
from ctaprod.client.http import Client
from ctaprod.core.catalog import FileRegistration
from ctaprod.core.job_states import JobStatus
from ctaprod.core.matching import Resource
from ctaprod.core.schemas import MatchResponse, StatusReport
from ctaprod.core.settings import Settings, StorageElementConfig
from ctaprod.core.storage import attempt_upload_path
from ctaprod.logic import catalog
from ctaprod.pilot.config import RetryPolicy, WrapperOptions
from ctaprod.pilot.output_sandbox import JOB_LOG
from ctaprod.pilot.wrapper import JobOutcome, run_job
from ctaprod.resources.storage import (
    PosixStorageElement,
    adler32_of,
    register_storage_plugin,
)
from tests.dm_helpers import data_settings
from tests.logic.test_input_data import ADMIN

pytestmark = pytest.mark.timeout(120)
J = JobStatus
FAST = RetryPolicy(max_seconds=2, initial=0.1, max_delay=0.2)
OPTS = WrapperOptions(heartbeat_interval=0.3, poll_interval=0.1, kill_grace=1.0, retry=FAST)
WAIT = 60.0  # generous: the machine is shared and loaded


class Gate:
    """Holds the next ``armed`` uploads to a gated SE until ``release`` is set."""

    def __init__(self) -> None:
        self.armed = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def hold(self) -> None:
        with self.lock:
            if self.armed <= 0:
                return
            self.armed -= 1
        self.entered.set()
        assert self.release.wait(WAIT), "the test never opened the gate"


GATES: dict[str, Gate] = {}


class GatedPosix(PosixStorageElement):
    """A POSIX SE whose uploads wait at the gate (a slow, throttled SE for the test)."""

    def __init__(self, name: str, base_path: str, gate: Gate) -> None:
        super().__init__(name, base_path)
        self.gate = gate

    def put(self, path: str, source: BinaryIO | Path) -> int:
        self.gate.hold()
        return super().put(path, source)


def _gated(name: str, config: StorageElementConfig) -> GatedPosix:
    return GatedPosix(name, config.base_path, GATES.setdefault(config.base_path, Gate()))


register_storage_plugin("gated", _gated)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    s = data_settings(db_url, tmp_path)
    s.data.verify_registration = True  # the server checks the attempt's upload
    s.storage_elements["SE-G"] = StorageElementConfig(
        plugin="gated", base_path=str(tmp_path / "se" / "SE-G"), site="A"
    )
    return s


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = GATES.setdefault(str(tmp_path / "se" / "SE-G"), Gate())
    yield g
    g.release.set()  # never leave a wrapper thread waiting
    GATES.pop(str(tmp_path / "se" / "SE-G"), None)


@pytest.fixture
def admin(live_server: Any) -> Iterator[Client]:
    with Client(live_server.url, live_server.admin_token, timeout=10) as client:
        yield client


def match_one(live_server: Any) -> MatchResponse:
    """A fresh pilot at site A matches the waiting job."""
    live_server.services.matcher.invalidate()
    with Client(live_server.url, live_server.pilot_token, timeout=10) as pilot:
        reg = pilot.register_pilot(f"att{time.monotonic_ns()}", "A")
    with Client(live_server.url, reg.session_token, timeout=10) as session:
        found = session.match(reg.pilot_id, Resource(site="A", cpu_time_left=200000))
    assert found is not None
    return found


def factory(url: str) -> Callable[[str], Client]:
    return lambda token: Client(url, token, timeout=10)


def job_doc(se: str = "SE-G", script: str = "") -> dict[str, object]:
    # Every attempt writes other bytes: the content tells which attempt a file is from. A
    # copy goes next to the job directory, which the wrapper removes once the job is over.
    return {
        "Executable": "/bin/sh",
        "Arguments": f"-c '{script}head -c 64 /dev/urandom | od -An -x > out.dat; "
        "cp out.dat ../out.dat'",
        "CPUTime": 600,
        "OutputData": ["out.dat"],
        "OutputSE": [se],
        "OutputPath": "/d/att/%j",
    }


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def in_background(fn: Callable[[], JobOutcome]) -> tuple[threading.Thread, list[JobOutcome]]:
    out: list[JobOutcome] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_rescheduled_during_upload_ends_done_with_its_output_once(
    live_server: Any, admin: Client, gate: Gate, tmp_path: Path
) -> None:
    """(a) The first attempt is uploading when the job is rescheduled; the second attempt
    runs to Done meanwhile; the first then goes on. The output is on storage and in the
    catalog exactly once, the second attempt's, and the first one's upload is gone."""
    ctx = live_server.services.ctx
    [job_id] = admin.submit(documents=[job_doc()])
    first = match_one(live_server)
    assert (first.job_id, first.attempt) == (job_id, 0)
    gate.armed = 1
    thread, outcomes = in_background(
        lambda: run_job(factory(live_server.url), first, tmp_path / "w1", OPTS)
    )
    assert gate.entered.wait(WAIT), "the first attempt never started its upload"
    assert admin.reschedule([job_id]) == {job_id: "Waiting"}
    second = match_one(live_server)
    assert (second.job_id, second.attempt) == (job_id, 1)
    done = run_job(factory(live_server.url), second, tmp_path / "w2", OPTS)
    assert (done.status, done.minor_status) == (J.DONE, "Execution Complete")
    gate.release.set()  # the first attempt's upload goes on now
    thread.join(WAIT)
    assert not thread.is_alive()
    assert outcomes[0].status is None  # it gave the job up

    lfn = f"/d/att/{job_id}/out.dat"
    content = (tmp_path / "w2" / "out.dat").read_bytes()
    assert content != (tmp_path / "w1" / "out.dat").read_bytes()
    se_root = tmp_path / "se" / "SE-G"
    assert files_under(se_root) == [lfn[1:]]  # no temporary upload left
    assert (se_root / lfn[1:]).read_bytes() == content
    info = catalog.get_files(ctx, [lfn])[lfn]
    assert (info.replicas, info.size) == (["SE-G"], len(content))
    assert info.checksum == adler32_of(tmp_path / "w2" / "out.dat")
    assert (info.job_id, info.attempt) == (job_id, 1)
    assert [e.name for e in catalog.listdir(ctx, ADMIN, f"/d/att/{job_id}")] == ["out.dat"]
    assert admin.job(job_id).status is J.DONE


# A wrapper in a process of its own that stops for good right after the catalog answered its
# registration (201): the test SIGKILLs it there, before it reports a final status.
HOLD_AFTER_REGISTRATION = """
import logging, sys, time
from pathlib import Path
from ctaprod.client.http import Client
from ctaprod.core.schemas import MatchResponse
from ctaprod.pilot.config import RetryPolicy, WrapperOptions
from ctaprod.pilot.wrapper import run_job

url, match_file, work, flag = sys.argv[1:5]

class HoldAfterRegistration(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if "/api/catalog/files" in text and "201" in text:
            Path(flag).write_text("registered")
            time.sleep(3600)

httpx_log = logging.getLogger("httpx")
httpx_log.setLevel(logging.INFO)
httpx_log.addHandler(HoldAfterRegistration())
match = MatchResponse.model_validate_json(Path(match_file).read_text())
opts = WrapperOptions(heartbeat_interval=0.3, poll_interval=0.1, kill_grace=1.0,
                      retry=RetryPolicy(max_seconds=2, initial=0.1, max_delay=0.2))
run_job(lambda token: Client(url, token, timeout=10), match, Path(work), opts)
"""


def test_rerun_after_registered_outputs_ends_done(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    """(b) The first attempt registers its output and its process is SIGKILLed before the
    final status; the rerun (other bytes) replaces that output and ends Done."""
    ctx = live_server.services.ctx
    [job_id] = admin.submit(documents=[job_doc("SE-A")])
    first = match_one(live_server)
    match_file, flag = tmp_path / "match.json", tmp_path / "registered"
    match_file.write_text(first.model_dump_json())
    with (tmp_path / "wrapper1.log").open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                HOLD_AFTER_REGISTRATION,
                live_server.url,
                str(match_file),
                str(tmp_path / "w1"),
                str(flag),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        wait_for(
            lambda: flag.exists() or proc.poll() is not None, "the first attempt's registration"
        )
        assert flag.exists(), (tmp_path / "wrapper1.log").read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT)
    lfn = f"/d/att/{job_id}/out.dat"
    registered = catalog.get_files(ctx, [lfn])[lfn]
    assert admin.job(job_id).status is J.RUNNING  # no final status reached the server

    assert admin.reschedule([job_id]) == {job_id: "Waiting"}  # as the stalled agent would
    second = match_one(live_server)
    assert second.attempt == 1
    done = run_job(factory(live_server.url), second, tmp_path / "w2", OPTS)
    assert (done.status, done.minor_status) == (J.DONE, "Execution Complete")
    local = tmp_path / "w2" / "out.dat"
    info = catalog.get_files(ctx, [lfn])[lfn]
    assert (info.replicas, info.checksum) == (["SE-A"], adler32_of(local))
    assert (info.job_id, info.attempt) == (job_id, 1)
    assert (registered.job_id, registered.attempt) == (job_id, 0)
    assert info.checksum != registered.checksum
    se_root = tmp_path / "se" / "SE-A"
    assert (se_root / lfn[1:]).read_bytes() == local.read_bytes()
    assert files_under(se_root / "d" / "att") == [f"{job_id}/out.dat"]  # attempt 0's upload gone
    assert admin.job(job_id).status is J.DONE


def _usage(ctx: Any, job_id: int) -> tuple[float, float, int]:
    with ctx.db.read() as conn:
        row = ctx.jobs.get(conn, job_id)
    return row["cpu_seconds"] or 0.0, row["wall_seconds"] or 0.0, row["peak_rss_bytes"] or 0


def test_keepalive_keeps_usage_and_a_kill_abandons_the_upload(
    live_server: Any, admin: Client, gate: Gate, tmp_path: Path
) -> None:
    """(c) While the output upload waits, keep-alive beats keep the payload's figures (not
    zeros); a Kill stops the beats, the upload is abandoned and removed, nothing is
    registered."""
    ctx = live_server.services.ctx
    [job_id] = admin.submit(documents=[job_doc(script="sleep 1.5; ")])
    match = match_one(live_server)
    gate.armed = 1
    thread, outcomes = in_background(
        lambda: run_job(factory(live_server.url), match, tmp_path / "w", OPTS)
    )
    assert gate.entered.wait(WAIT)
    # Keep-alive beats arrive while the upload waits: they carry the payload's final figures
    # (the payload slept 1.5 s), never zeros.
    with ctx.db.read() as conn:
        since = ctx.jobs.get(conn, job_id)["heartbeat_time"]

    def beaten_after(when: Any) -> Callable[[], bool]:
        def check() -> bool:
            with ctx.db.read() as conn:
                return bool(ctx.jobs.get(conn, job_id)["heartbeat_time"] > when)

        return check

    wait_for(beaten_after(since), "a keep-alive beat during the upload")
    cpu, wall, rss = _usage(ctx, job_id)
    assert wall >= 1.0
    assert rss > 0
    with ctx.db.read() as conn:
        since = ctx.jobs.get(conn, job_id)["heartbeat_time"]
    wait_for(beaten_after(since), "a second keep-alive beat")
    assert _usage(ctx, job_id) == (cpu, wall, rss)

    admin.kill([job_id])
    log = tmp_path / "w" / f"job_{job_id}" / JOB_LOG
    wait_for(
        lambda: log.exists() and "keep-alive stopped" in log.read_text(),
        "the keep-alive to stop on the Kill",
    )
    gate.release.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert outcomes[0].status is None
    lfn = f"/d/att/{job_id}/out.dat"
    assert catalog.get_files(ctx, [lfn]) == {}
    assert files_under(tmp_path / "se" / "SE-G") == []  # the upload was abandoned and removed
    assert admin.job(job_id).status is J.KILLED
    assert _usage(ctx, job_id) == (cpu, wall, rss)


def test_superseded_token_can_neither_register_nor_remove(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    """(d) After a reschedule, the first attempt's token is refused (403) for registering,
    removing entries and removing files; the current attempt's file stays. A different job
    or a user writing the same LFN with other content gets 409."""
    ctx = live_server.services.ctx
    [job_id] = admin.submit(documents=[job_doc("SE-A")])
    old = match_one(live_server)
    admin.reschedule([job_id])
    new = match_one(live_server)
    lfn = f"/d/att/{job_id}/out.dat"
    se_a = ctx.storage("SE-A")
    src = tmp_path / "new.dat"
    src.write_bytes(b"second attempt")
    se_a.put(attempt_upload_path(lfn, job_id, 1), src)
    reg = FileRegistration(lfn=lfn, size=src.stat().st_size, checksum=adler32_of(src), se="SE-A")
    with Client(live_server.url, new.job_token, timeout=10) as current:
        current.report(StatusReport(job_id=job_id, status=J.RUNNING))
        current.register_files([reg], verify=False)
    se_a.rename(attempt_upload_path(lfn, job_id, 1), lfn)

    stale_src = tmp_path / "old.dat"
    stale_src.write_bytes(b"first attempt!")
    se_a.put(attempt_upload_path(lfn, job_id, 0), stale_src)
    stale_reg = reg.model_copy(update={"checksum": adler32_of(stale_src)})
    with Client(live_server.url, old.job_token, timeout=10) as stale:
        for call in (
            lambda: stale.register_files([stale_reg]),
            lambda: stale.register_files([stale_reg.model_copy(update={"lfn": lfn + "2"})]),
            lambda: stale.remove_file_entries([lfn]),
            lambda: stale.data_remove_file(lfn),
            lambda: stale.data_remove_replica(lfn, "SE-A"),
        ):
            with pytest.raises(ApiError) as refused:
                call()
            assert refused.value.status == 403, refused.value.message
            assert "superseded" in refused.value.message
    info = catalog.get_files(ctx, [lfn])[lfn]
    assert (info.checksum, info.attempt, info.replicas) == (reg.checksum, 1, ["SE-A"])
    assert (tmp_path / "se" / "SE-A" / lfn[1:]).read_bytes() == b"second attempt"

    # Another job, or a user, writing the LFN with other content: Conflict, as before.
    [other_id] = admin.submit(documents=[job_doc("SE-A")])
    other = match_one(live_server)
    assert other.job_id == other_id
    with Client(live_server.url, other.job_token, timeout=10) as other_job:
        with pytest.raises(ApiError) as conflict:
            other_job.register_files([stale_reg], verify=False)
        assert conflict.value.status == 409
    with pytest.raises(ApiError) as conflict:
        admin.register_files([stale_reg], verify=False)
    assert conflict.value.status == 409
    assert catalog.get_files(ctx, [lfn])[lfn].checksum == reg.checksum


def test_keepalive_stops_at_the_first_gone_reply(caplog: pytest.LogCaptureFixture) -> None:
    from ctaprod.pilot.keepalive import KeepAlive
    from ctaprod.pilot.watchdog import Usage

    sent: list[Usage] = []
    last = Usage(3.0, 9.0, 100, 200)

    def beat(usage: Usage) -> bool:
        sent.append(usage)
        return len(sent) == 2  # the server says Kill (or 403/404/409) on the second beat

    with (
        caplog.at_level(logging.WARNING, "ctaprod.pilot.keepalive"),
        KeepAlive(beat, 0.02, lambda: last) as alive,
    ):
        assert alive.gone.wait(WAIT)
        time.sleep(0.2)
    assert sent == [last, last]  # the last figures known, and no beat after the "gone"
    assert "keep-alive stopped" in caplog.text


def test_rerun_replaces_entry_metadata_and_old_copies_elsewhere(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    """A rerun's registration replaces the earlier attempt's entry in one transaction (new
    metadata, ancestry, replicas; a ``remove`` then a ``file`` event) and removes the old
    bytes on an SE the rerun does not write to, and the earlier attempt's upload."""
    from sqlalchemy import select

    from ctaprod.core.metadata import FieldDeclaration
    from ctaprod.db.tables import catalog_events
    from ctaprod.logic import metadata

    ctx = live_server.services.ctx
    metadata.add_field(ctx, ADMIN, FieldDeclaration(name="run", type="int"))
    [job_id] = admin.submit(documents=[job_doc("SE-A")])
    lfn = f"/d/att/{job_id}/out.dat"
    first = match_one(live_server)

    def register(match: MatchResponse, se: str, data: bytes, run: int) -> FileRegistration:
        src = tmp_path / f"a{match.attempt}.dat"
        src.write_bytes(data)
        upload = attempt_upload_path(lfn, job_id, match.attempt)
        ctx.storage(se).put(upload, src)
        reg = FileRegistration(
            lfn=lfn, size=len(data), checksum=adler32_of(src), se=se, metadata={"run": run}
        )
        with Client(live_server.url, match.job_token, timeout=10) as job:
            job.register_files([reg])
        return reg

    register(first, "SE-A", b"attempt zero", 1)
    ctx.storage("SE-A").rename(attempt_upload_path(lfn, job_id, 0), lfn)
    # Attempt 0 also left an upload on SE-B (as a wrapper killed mid-way would).
    ctx.storage("SE-B").put(attempt_upload_path(lfn, job_id, 0), tmp_path / "a0.dat")
    with ctx.db.read() as conn:
        last_event = conn.execute(select(catalog_events.c.event_id)).all()[-1][0]
    admin.reschedule([job_id])
    second = match_one(live_server)
    reg = register(second, "SE-B", b"attempt one!!", 2)
    ctx.storage("SE-B").rename(attempt_upload_path(lfn, job_id, 1), lfn)

    info = catalog.get_files(ctx, [lfn])[lfn]
    assert (info.replicas, info.checksum, info.attempt) == (["SE-B"], reg.checksum, 1)
    assert metadata.get_metadata(ctx, lfn).own == {"run": 2}
    assert files_under(tmp_path / "se" / "SE-A" / "d") == []  # old copy removed
    assert files_under(tmp_path / "se" / "SE-B" / "d") == [lfn[len("/d/") :]]
    with ctx.db.read() as conn:
        kinds = [
            k
            for (k,) in conn.execute(
                select(catalog_events.c.kind)
                .where(catalog_events.c.event_id > last_event)
                .order_by(catalog_events.c.event_id)
            )
        ]
    assert kinds == ["file_removed", "file_registered"]
