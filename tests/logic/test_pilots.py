"""Pilot factory use cases (ctaprod.logic.pilots): demand, submission, following pilots.

Pilots are real local processes (the Local CE) running small stand-in commands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ctaprod.core.errors import Unavailable
from ctaprod.core.settings import QueueConfig
from ctaprod.db.sites import BANNED
from ctaprod.logic import pilots as P
from ctaprod.resources.computing import (
    ComputingElement,
    LocalComputingElement,
    PilotJobStatus,
    PilotSpec,
)
from tests.agents.helpers import PILOT, SITE, World

QUEUE = QueueConfig(ce="localhost", site=SITE, max_waiting=2, max_total=3)


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


def _rows(world: World, queue: str = "q") -> list[Any]:
    with world.ctx.db.read() as conn:
        return world.ctx.pilots.search(conn, queue=queue)


def _log(world: World, pilot_id: int) -> str | None:
    with world.ctx.db.read() as conn:
        return world.ctx.pilots.log(conn, pilot_id)


def _submit(
    world: World, ce: ComputingElement, codes: dict[str, str], queue: QueueConfig = QUEUE
) -> dict[str, int]:
    """Submit one pilot per stamp running ``python -c code``; stamp -> pilot_id."""

    def spec(stamp: str) -> PilotSpec:
        return PilotSpec(stamp, [sys.executable, "-c", codes[stamp]])

    ids = P.submit_pilots(world.ctx, "q", queue, ce, list(codes), spec)
    return dict(zip(codes, ids, strict=True))


def _wait_final(ce: ComputingElement, refs: Sequence[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(
        s in (PilotJobStatus.DONE, PilotJobStatus.FAILED, PilotJobStatus.ABORTED)
        for s in ce.status(refs).values()
    ):
        assert time.monotonic() < deadline, ce.status(refs)
        time.sleep(0.05)


def test_demand_counts_jobs_and_pilots(world: World) -> None:
    ctx, matcher = world.ctx, world.matcher
    assert P.queue_demand(ctx, matcher, "q", QUEUE).to_submit == 0  # no jobs: no pilots
    world.submit(5)
    d = P.queue_demand(ctx, matcher, "q", QUEUE)
    assert (d.jobs_waiting, d.pilots_waiting, d.pilots_total, d.to_submit) == (5, 0, 0, 2)
    now = world.clock()
    with ctx.db.write() as conn:
        ctx.pilots.add(
            conn,
            [
                {
                    "stamp": f"s{i}",
                    "ce": "localhost",
                    "queue": "q",
                    "site": SITE,
                    "status": "Submitted",
                    "submission_time": now,
                    "last_update": now,
                }
                for i in range(2)
            ],
        )
        ctx.pilots.add(
            conn,
            [
                {
                    "stamp": "other-queue",
                    "ce": "localhost",
                    "queue": "q2",
                    "site": SITE,
                    "status": "Submitted",
                    "submission_time": now,
                    "last_update": now,
                }
            ],
        )
    assert P.queue_demand(ctx, matcher, "q", QUEUE).to_submit == 0  # max_waiting reached
    # One registers (Running): one waiting slot opens, and max_total allows one more.
    from ctaprod.logic import runtime

    runtime.register_pilot(
        ctx, world.services.tokens, replace(PILOT, stamp="s0"), "s0", SITE, "localhost", "q"
    )
    d = P.queue_demand(ctx, matcher, "q", QUEUE)
    assert (d.pilots_waiting, d.pilots_total, d.to_submit) == (1, 2, 1)
    wide = QUEUE.model_copy(update={"max_waiting": 10, "max_total": 10})
    assert P.queue_demand(ctx, matcher, "q", wide).to_submit == 4  # 5 jobs - 1 waiting


@pytest.mark.parametrize(
    ("queue", "jobs"),
    [
        ({}, 3),
        ({"site": "LCG.Banned.org"}, 0),  # site mask
        ({"platform": "EL8"}, 0),
        ({"platform": ""}, 0),  # the jobs ask for a platform the queue does not name
        ({"cpu_time": 600}, 0),  # too short for the jobs' CPU time
        ({"cpu_time": 3600}, 0),  # the jobs need all of it: a pilot has less left when it asks
        ({"cpu_time": 3660}, 3),
        ({"tags": ["GPU"]}, 3),
    ],
)
def test_demand_applies_the_matching_rules(world: World, queue: dict[str, Any], jobs: int) -> None:
    world.submit(3, Platform="EL9", CPUTime=3600)
    world.submit(2, Platform="EL9", Tags=["GPU"], CPUTime=3600)
    with world.ctx.db.write() as conn:
        world.ctx.sites.set_status(conn, "LCG.Banned.org", BANNED, "test", "op", world.clock())
    world.matcher.invalidate()
    config = QueueConfig(
        **{"site": SITE, "platform": "EL9", "max_waiting": 10, "max_total": 10, **queue}
    )
    d = P.queue_demand(world.ctx, world.matcher, "q", config)
    expected = jobs + (2 if queue.get("tags") else 0)
    assert (d.jobs_waiting, d.to_submit) == (expected, expected)


class _RecordingCE(ComputingElement):
    """A batch system that answers with its own references and checks the pilot rows."""

    def __init__(self, world: World, fail: bool = False) -> None:
        super().__init__("fake")
        self.world, self.fail = world, fail
        self.seen: list[tuple[str, str]] = []

    def submit(self, specs: Sequence[PilotSpec]) -> list[str]:
        self.seen = [(r["stamp"], r["status"]) for r in _rows(self.world)]
        if self.fail:
            raise Unavailable("batch system down")
        return [f"job.{s.stamp}" for s in specs]

    def status(self, refs: Sequence[str]) -> dict[str, PilotJobStatus]:
        return {r: PilotJobStatus.UNKNOWN for r in refs}

    def cancel(self, refs: Sequence[str]) -> None:
        pass

    def output(self, ref: str) -> str:
        return ""

    def available_slots(self) -> int | None:
        return None


def test_rows_are_written_before_submission_and_get_the_ce_refs(world: World) -> None:
    ce = _RecordingCE(world)
    ids = _submit(world, ce, {"a1": "", "a2": ""})
    assert ce.seen == [("a1", "Submitted"), ("a2", "Submitted")]
    rows = {r["stamp"]: r for r in _rows(world)}
    assert {s: rows[s]["pilot_id"] for s in rows} == ids
    for stamp, row in rows.items():
        assert (row["ce_ref"], row["ce"], row["queue"], row["site"]) == (
            f"job.{stamp}",
            "localhost",
            "q",
            SITE,
        )


def test_refused_submission_aborts_the_rows(world: World) -> None:
    with pytest.raises(Unavailable):
        _submit(world, _RecordingCE(world, fail=True), {"b1": ""})
    [row] = _rows(world)
    assert (row["status"], row["status_reason"]) == (
        "Aborted",
        "Submission failed: batch system down",
    )


def test_pilot_environment(world: World) -> None:
    queue = QueueConfig(
        ce="ce.example.org",
        site="LCG.X.org",
        platform="EL9",
        tags=["GPU", "SSD"],
        cpu_time=7200,
        memory_mb=4096,
        processors=4,
        max_empty_matches=2,
    )
    env = P.pilot_environment(world.ctx, "long", queue, "abc", "/scratch/abc")
    assert env == {
        "CTAPROD_PILOT_URL": world.ctx.settings.server_url(),
        "CTAPROD_PILOT_STAMP": "abc",
        "CTAPROD_PILOT_SITE": "LCG.X.org",
        "CTAPROD_PILOT_CE": "ce.example.org",
        "CTAPROD_PILOT_QUEUE": "long",
        "CTAPROD_PILOT_CPU_TIME": "7200",
        "CTAPROD_PILOT_MEMORY_MB": "4096",
        "CTAPROD_PILOT_PROCESSORS": "4",
        "CTAPROD_PILOT_PLATFORM": "EL9",
        "CTAPROD_PILOT_TAGS": "GPU,SSD",
        "CTAPROD_PILOT_MAX_EMPTY_MATCHES": "2",
        "CTAPROD_PILOT_WORK_DIR": "/scratch/abc",
    }
    assert "CTAPROD_PILOT_WORK_DIR" not in P.pilot_environment(world.ctx, "q", queue, "a")
    sandboxed = queue.model_copy(update={"sandbox": "apptainer", "apptainer_image": "/cvmfs/i"})
    env = P.pilot_environment(world.ctx, "q", sandboxed, "a")
    assert (env["CTAPROD_PILOT_SANDBOX"], env["CTAPROD_PILOT_APPTAINER_IMAGE"]) == (
        "apptainer",
        "/cvmfs/i",
    )


def test_a_queue_environment_reaches_its_pilots_not_over_their_own(world: World) -> None:
    queue = QueueConfig(environment={"CTAPROD_CTA_SOFTWARE": "cvmfs", "SITE_SCRATCH": "/s"})
    env = P.pilot_environment(world.ctx, "q", queue, "abc")
    assert (env["CTAPROD_CTA_SOFTWARE"], env["SITE_SCRATCH"]) == ("cvmfs", "/s")
    assert not any(k.startswith(("CTAPROD_PILOT_TOKEN", "CTAPROD_TOKEN")) for k in env)
    for bad, why in (
        ({"CTAPROD_PILOT_TOKEN": "x"}, "the pilot's own"),
        ({"CTAPROD_TOKEN": "x"}, "the pilot's own"),
        ({"A B": "x"}, "not a variable name"),
    ):
        with pytest.raises(ValidationError, match=why):
            QueueConfig(environment=bad)


def test_poll_follows_pilots_in_the_local_ce(world: World, tmp_path: Path) -> None:
    ce = LocalComputingElement("q", tmp_path / "ce", max_slots=10)
    ids = _submit(
        world,
        ce,
        {
            "fails": "import sys; print('boom: no server'); sys.exit(3)",
            "quiet": "print('nothing to do')",
            "sleeps": "import time; time.sleep(60)",
            "reports": "print('registered and reported')",
        },
    )
    # "reports" behaves like a real pilot: it registers, then reports its end with a log.
    from ctaprod.logic import runtime

    reg = runtime.register_pilot(
        world.ctx,
        world.services.tokens,
        replace(PILOT, stamp="reports"),
        "reports",
        SITE,
        "localhost",
        "q",
    )
    session = replace(PILOT, pilot_id=reg.pilot_id)
    _wait_final(ce, ["fails", "quiet", "reports"])
    runtime.pilot_finished(world.ctx, session, reg.pilot_id, True, "no more jobs", "own log", 0)

    report = P.poll_pilots(world.ctx, "q", QUEUE, ce)
    assert (report.checked, report.changed, report.logs_saved) == (3, 3, 2)
    status = {r["stamp"]: (r["status"], r["status_reason"]) for r in _rows(world)}
    assert status == {
        "fails": ("Failed", "Batch job failed before registering"),
        "quiet": ("Done", "Batch job ended without registering"),
        "sleeps": ("Waiting", "Running in the batch system"),
        "reports": ("Done", "no more jobs"),
    }
    assert "boom: no server" in (_log(world, ids["fails"]) or "")
    assert "nothing to do" in (_log(world, ids["quiet"]) or "")
    assert _log(world, ids["reports"]) == "own log"  # its own log is kept
    assert _log(world, ids["sleeps"]) is None

    ce.cancel(["sleeps"])
    report = P.poll_pilots(world.ctx, "q", QUEUE, ce)
    assert (report.changed, report.logs_saved) == (1, 1)
    assert _rows(world)[2]["status"] == "Aborted"
    assert P.poll_pilots(world.ctx, "q", QUEUE, ce).checked == 0


def test_a_pilot_unknown_to_its_ce_for_long_is_lost(world: World, tmp_path: Path) -> None:
    ce = LocalComputingElement("q", tmp_path / "ce", max_slots=1)
    now = world.clock()
    with world.ctx.db.write() as conn:
        [pid] = world.ctx.pilots.add(
            conn,
            [
                {
                    "stamp": "forgotten",
                    "ce_ref": "forgotten",
                    "ce": "localhost",
                    "queue": "q",
                    "site": SITE,
                    "status": "Waiting",
                    "submission_time": now,
                    "last_update": now,
                }
            ],
        )
    assert P.poll_pilots(world.ctx, "q", QUEUE, ce, lost_after=300).changed == 0
    assert _rows(world)[0]["unknown_since"] == now  # kept in the row: survives a restart
    world.clock.advance(299)
    assert P.poll_pilots(world.ctx, "q", QUEUE, ce, lost_after=300).changed == 0
    world.clock.advance(2)
    assert P.poll_pilots(world.ctx, "q", QUEUE, ce, lost_after=300).changed == 1
    [row] = _rows(world)
    assert (row["status"], row["status_reason"]) == ("Lost", "Unknown to the CE for 301 s")
    assert pid == row["pilot_id"]


def test_log_tail() -> None:
    assert P.log_tail("short") == "short"
    text = "é" * 50 + "end"
    cut = P.log_tail(text, max_bytes=20)
    assert cut.endswith("end")
    assert cut.startswith("[... ")
    assert len(cut.split("\n", 1)[1].encode()) <= 20
