"""Verbs for agent tests: a controllable clock, jobs, pilots and matches on the real test DB.

Identities are built directly (not verified from tokens) so that the clock may run ahead of
real time: a token "issued" in the future would be refused by the JWT library.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ctaprod.core.archive import make_archive
from ctaprod.core.identity import Identity
from ctaprod.core.jobdesc import expand
from ctaprod.core.matching import Resource
from ctaprod.core.properties import TokenKind
from ctaprod.core.schemas import HeartbeatItem, StatusReport
from ctaprod.logic import auth, runtime, sandboxes
from ctaprod.logic import jobs as job_logic
from ctaprod.logic.matcher import Match
from tests.identities import ensure_member

SITE = "LOCAL.localhost.org"
ALICE = Identity("alice", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))
PILOT = Identity("pilot", "ctao_pilot", TokenKind.PILOT, frozenset({"GenericPilot"}))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class World:
    """Jobs, pilots and their reports for one test (services from the conftest fixture)."""

    _stamps = itertools.count(1)

    def __init__(self, services: Any, *, fake_clock: bool = True) -> None:
        self.services = services
        self.ctx = services.ctx
        self.matcher = services.matcher
        self.clock = Clock()
        if fake_clock:
            self.ctx.clock = self.clock
        auth.bootstrap(self.ctx)

    # --- jobs -------------------------------------------------------------------------
    def submit(self, count: int = 1, ident: Identity = ALICE, **fields: Any) -> list[int]:
        doc: dict[str, Any] = {"Executable": "/bin/true", "CPUTime": 3600, **fields}
        descs = [d for _ in range(count) for d in expand(doc, self.ctx.limits)]
        ensure_member(self.ctx, ident, self.services.tokens)
        ids = job_logic.submit_jobs(self.ctx, ident, descs).job_ids
        self.matcher.invalidate()
        return ids

    def row(self, job_id: int) -> Any:
        with self.ctx.db.read() as conn:
            return self.ctx.jobs.get(conn, job_id)

    def status(self, job_id: int) -> str:
        row = self.row(job_id)
        return "" if row is None else str(row["status"])

    def history(self, job_id: int) -> list[Any]:
        with self.ctx.db.read() as conn:
            return self.ctx.jobs.history(conn, job_id)

    def in_task_queue(self, job_id: int) -> bool:
        from ctaprod.db.tables import tq_jobs

        with self.ctx.db.read() as conn:
            n = conn.execute(
                select(func.count()).select_from(tq_jobs).where(tq_jobs.c.job_id == job_id)
            ).scalar_one()
        return bool(n)

    # --- pilots -----------------------------------------------------------------------
    def pilot(self, site: str = SITE, queue: str = "q", ce: str = "ce.test") -> Identity:
        """Register a pilot; returns its session identity (with ``pilot_id``)."""
        stamp = f"stamp-{next(self._stamps)}"
        reg = runtime.register_pilot(self.ctx, self.services.tokens, PILOT, stamp, site, ce, queue)
        return Identity(
            "pilot",
            "ctao_pilot",
            TokenKind.PILOT,
            frozenset({"GenericPilot"}),
            pilot_id=reg.pilot_id,
        )

    def pilots(self) -> list[Any]:
        with self.ctx.db.read() as conn:
            return self.ctx.pilots.search(conn)

    def pilot_log(self, pilot_id: int) -> str | None:
        with self.ctx.db.read() as conn:
            return self.ctx.pilots.log(conn, pilot_id)

    def pilot_status(self, pilot_id: int) -> str:
        with self.ctx.db.read() as conn:
            row = self.ctx.pilots.get(conn, pilot_id)
        assert row is not None
        return str(row["status"])

    def end_pilot(self, pilot: Identity, ok: bool = False) -> None:
        assert pilot.pilot_id is not None
        runtime.pilot_finished(self.ctx, pilot, pilot.pilot_id, ok, "test", None, 0)

    def match(self, pilot: Identity, site: str = SITE) -> Match | None:
        assert pilot.pilot_id is not None
        self.matcher.invalidate()
        return self.matcher.match(pilot, pilot.pilot_id, Resource(site=site))

    @staticmethod
    def job_ident(m: Match, pilot: Identity) -> Identity:
        return Identity(
            m.owner,
            m.owner_group,
            TokenKind.JOB,
            job_id=m.job_id,
            pilot_id=pilot.pilot_id,
            attempt=m.attempt,
        )

    def report(self, ident: Identity, status: Any, minor: str = "") -> None:
        assert ident.job_id is not None
        [res] = runtime.report_statuses(
            self.ctx, ident, [StatusReport(job_id=ident.job_id, status=status, minor_status=minor)]
        )
        assert res.error is None, res.error

    def heartbeat(self, ident: Identity, *, ok: bool = True) -> Any:
        """Send one heartbeat; its result (checked to be accepted unless ``ok`` is False)."""
        assert ident.job_id is not None
        [res] = runtime.heartbeats(self.ctx, ident, [HeartbeatItem(job_id=ident.job_id)])
        if ok:
            assert res.error is None, res.error
        return res

    def running_job(self, **fields: Any) -> tuple[int, Identity, Identity]:
        """Submit one job, match it to a new pilot and report it Running.

        Returns (job_id, pilot identity, job identity)."""
        [job_id] = self.submit(**fields)
        pilot = self.pilot()
        m = self.match(pilot)
        assert m is not None
        assert m.job_id == job_id
        ident = self.job_ident(m, pilot)
        self.report(ident, "Running")
        return job_id, pilot, ident

    # --- sandboxes --------------------------------------------------------------------
    def sandbox(self, tmp: Path, content: str, ident: Identity = ALICE) -> tuple[str, int]:
        """Upload a sandbox holding one file with ``content``; (sha256, sb_id)."""
        src = tmp / f"in-{content}.txt"
        src.write_text(content)
        archive = tmp / f"sb-{content}.tar.gz"
        sha = make_archive([src], archive)  # deterministic: same content, same sha256
        sb_id = sandboxes.store_sandbox(self.ctx, ident, sha, archive.stat().st_size, archive)
        return sha, sb_id
