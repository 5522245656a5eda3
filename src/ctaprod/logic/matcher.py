"""The matcher: give a pilot the best job it can run.

Choosing works on task queues (thousands), never on jobs (millions): the eligible queues for
the pilot's resource are found in a short-lived in-memory snapshot (those whose input data
has replicas at the pilot's site come first), a group is drawn by fair share (weight = the
group's share), a user inside it (equal shares), then that user's queue with the highest job
priority; one job is claimed from it atomically in the database. A stale snapshot only costs
a retry: the claim itself is the source of truth.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection

from ctaprod.core.errors import Forbidden, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import JobDescription
from ctaprod.core.matching import Requirements, Resource, eligible
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.core.properties import Property, TokenKind
from ctaprod.db.jobs import JobState
from ctaprod.db.taskqueues import CounterDrift, QueueLoad
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs

J = JobStatus


Grouping = dict[str, dict[str, list[int]]]  # owner group -> owner -> task queues


@dataclass
class Snapshot:
    taken: float
    queues: dict[int, Requirements]
    loads: dict[int, QueueLoad]
    banned_sites: frozenset[str]
    shares: dict[str, float]
    # Eligible queues per resource shape: pilots of one queue all look alike, so the scan
    # over every task queue is done once per snapshot and shape, not once per request.
    eligible: dict[tuple[object, ...], list[int]] = field(default_factory=dict)
    # Per site: the queues whose input data is there (input-data policy 'prefer').
    data_local: dict[str, frozenset[int]] = field(default_factory=dict)
    # Per resource shape: its eligible queues by group and user, the local ones first (see
    # Matcher.match); queues emptied meanwhile are skipped when drawn, not regrouped.
    grouped: dict[tuple[object, ...], tuple[Grouping, Grouping]] = field(default_factory=dict)
    segments: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.segments = sorted({r.cpu_segment for r in self.queues.values()})

    def shape(self, res: Resource) -> tuple[object, ...]:
        """What of a resource decides eligibility (CPU time left rounded down to a segment)."""
        i = bisect.bisect_right(self.segments, res.cpu_time_left)
        usable = self.segments[i - 1] if i else -1
        return (
            res.site,
            res.platform,
            tuple(sorted(res.all_tags())),
            usable,
            tuple(sorted(res.job_types)),
            tuple(sorted(res.owner_groups)),
        )


@dataclass(frozen=True)
class Match:
    job_id: int
    owner: str
    owner_group: str
    description: JobDescription
    job_token: str
    attempt: int
    heartbeat_interval: float
    input_sandboxes: list[str] = field(default_factory=list)


class Matcher:
    """Holds the queue snapshot of this process; thread-safe."""

    def __init__(
        self,
        ctx: Context,
        tokens: TokenService,
        snapshot_seconds: float = 1.0,
        max_attempts: int = 8,
    ) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.snapshot_seconds = snapshot_seconds
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._refresh = threading.Lock()
        self._snap: Snapshot | None = None
        # A queue's requirements never change (its key is their digest): parsed once per
        # process, kept across refreshes and invalidations, pruned to the live queues.
        self._requirements: dict[int, Requirements] = {}
        self._rng = random.Random()

    def invalidate(self) -> None:
        with self._lock:
            self._snap = None

    def snapshot(self) -> Snapshot:
        """The current snapshot; one thread refreshes an expired one while others go on
        with the old one (a stale snapshot only costs a failed claim)."""
        with self._lock:
            snap = self._snap
            if snap is not None and time.monotonic() - snap.taken < self.snapshot_seconds:
                return snap
        if not self._refresh.acquire(blocking=snap is None):
            assert snap is not None
            return snap
        try:
            return self._take(snap)
        finally:
            self._refresh.release()

    def _take(self, snap: Snapshot | None) -> Snapshot:
        with self._lock:
            if self._snap is not None and self._snap is not snap:
                return self._snap  # another thread refreshed it meanwhile
        with self.ctx.db.read() as conn:
            loads = {ld.tq_id: ld for ld in self.ctx.queues.loads(conn)}
            known = self._requirements
            missing = [q for q in loads if q not in known]
            queues = {q: r for q, r in known.items() if q in loads}
            if missing:
                queues.update(self.ctx.queues.queue_requirements(conn, missing))
            self._requirements = dict(queues)
            snap = Snapshot(
                time.monotonic(),
                queues,
                loads,
                self.ctx.sites.banned(conn),
                self.ctx.auth.shares(conn),
            )
        with self._lock:
            self._snap = snap
        return snap

    def eligible_queues(self, res: Resource, snap: Snapshot) -> list[int]:
        """Non-empty queues of the snapshot whose requirements the resource satisfies."""
        shape = snap.shape(res)
        found = snap.eligible.get(shape)
        if found is None:
            tags = res.all_tags()
            found = [
                q for q, req in snap.queues.items() if eligible(req, res, tags, snap.banned_sites)
            ]
            snap.eligible[shape] = found
        return [q for q in found if q in snap.loads and snap.loads[q].waiting > 0]

    def local_queues(self, site: str, snap: Snapshot) -> frozenset[int]:
        """Queues of the snapshot whose input data has replicas at ``site``."""
        found = snap.data_local.get(site)
        if found is None:
            found = frozenset(q for q, req in snap.queues.items() if site in req.data_sites)
            snap.data_local[site] = found
        return found

    def choose(self, candidates: list[int], snap: Snapshot) -> int:
        """Fair share: draw a group by share, a user in it uniformly, then best priority."""
        found = self._draw(self._group(candidates, snap), snap, set())
        return self._rng.choice(candidates) if found is None else found

    @staticmethod
    def _group(queues: list[int], snap: Snapshot) -> Grouping:
        by_group: Grouping = defaultdict(lambda: defaultdict(list))
        for q in queues:
            req = snap.queues[q]
            by_group[req.owner_group][req.owner].append(q)
        return by_group

    def _groupings(self, res: Resource, snap: Snapshot) -> tuple[Grouping, Grouping]:
        """The resource's eligible queues grouped (local ones, all), once per snapshot."""
        key = (*snap.shape(res), res.site)
        found = snap.grouped.get(key)
        if found is None:
            candidates = self.eligible_queues(res, snap)
            local = self.local_queues(res.site, snap)
            near = [q for q in candidates if q in local] if local else []
            found = (self._group(near, snap), self._group(candidates, snap))
            snap.grouped[key] = found
        return found

    def _draw(self, by_group: Grouping, snap: Snapshot, skip: set[int]) -> int | None:
        """A queue of ``by_group`` by fair share and priority among those still waiting (not
        in ``skip``, not emptied in the snapshot); None when there is none. Costs the queues
        of one user, not all of them: groups and users found empty are dropped and redrawn."""

        def waiting(q: int) -> int | None:
            ld = snap.loads.get(q)  # another request may drop an emptied queue: use .get
            return ld.max_priority if ld is not None and ld.waiting > 0 and q not in skip else None

        groups = sorted(by_group)
        while groups:
            weights = [max(snap.shares.get(g, 1.0), 1e-6) for g in groups]
            group = self._rng.choices(groups, weights)[0]
            users = sorted(by_group[group])
            while users:
                user = self._rng.choice(users)
                prio = {q: p for q in by_group[group][user] if (p := waiting(q)) is not None}
                if prio:
                    best = max(prio.values())
                    return self._rng.choice([q for q, p in prio.items() if p == best])
                users.remove(user)
            groups.remove(group)
        return None

    def match(self, ident: Identity, pilot_id: int, res: Resource) -> Match | None:
        """Claim one job for the pilot, or None if nothing it can run is waiting."""
        if ident.kind is not TokenKind.PILOT or not ident.has(Property.GENERIC_PILOT):
            raise Forbidden("only a pilot token can ask for jobs")
        snap = self.snapshot()
        # Jobs whose input data is at the pilot's site go first (policy 'prefer').
        near, anywhere = self._groupings(res, snap)
        skip: set[int] = set()
        for attempt in range(self.max_attempts):
            tq_id = self._draw(near, snap, skip)
            if tq_id is None:
                tq_id = self._draw(anywhere, snap, skip)
            if tq_id is None:
                if attempt == 0:
                    self._check_pilot(pilot_id)
                return None
            found = self._claim(tq_id, pilot_id, res)
            if isinstance(found, Match):
                return found
            if found is _TAKEN:
                continue  # that job was being killed or deleted: the queue may hold more
            skip.add(tq_id)  # empty meanwhile: the snapshot was stale
            with self._lock:
                if self._snap is snap:
                    snap.loads.pop(tq_id, None)
        return None

    def _check_pilot(self, pilot_id: int, conn: Connection | None = None) -> None:
        """Only a registered, Running pilot gets jobs."""
        if conn is None:
            with self.ctx.db.read() as c:
                row = self.ctx.pilots.get(c, pilot_id)
        else:
            row = self.ctx.pilots.get(conn, pilot_id)
        if row is None:
            raise NotFound(f"no pilot {pilot_id}")
        if row["status"] != PilotStatus.RUNNING.value:
            raise Forbidden(f"pilot {pilot_id} is {row['status']}, not Running: no more jobs")

    def _claim(self, tq_id: int, pilot_id: int, res: Resource) -> Match | _Taken | None:
        """Claim a job of the queue: the match, None if the queue is empty, or _TAKEN if the
        job found was being changed by someone else (try again)."""
        ctx = self.ctx
        try:
            with ctx.db.write() as conn:
                self._check_pilot(pilot_id, conn)
                job_id = ctx.queues.claim(conn, tq_id)
                if job_id is None:
                    return None
                # Kill, delete and reschedule lock the job row, then the queue row. Holding
                # the queue row, never wait for the job row (a deadlock): give the claim back.
                state = ctx.jobs.states(conn, [job_id], skip_locked=True).get(job_id)
                if state is None and ctx.jobs.get(conn, job_id) is not None:
                    raise _RowBusy
                if state is None or state.status is not J.WAITING:
                    return _TAKEN  # a stale queue entry: its removal is committed
                return self._assign(conn, state, tq_id, pilot_id, res)
        except _RowBusy:
            return _TAKEN

    def _assign(
        self, conn: Connection, claimed: JobState, tq_id: int, pilot_id: int, res: Resource
    ) -> Match:
        """Move the claimed (row-locked, Waiting) job to Matched and build the pilot's reply."""
        ctx = self.ctx
        now = ctx.clock()
        job_id = claimed.job_id

        def decide(s: JobState) -> list[Step]:
            return [
                Step(
                    J.MATCHED,
                    "Assigned to pilot",
                    values={
                        "pilot_id": pilot_id,
                        "site": res.site,
                        "heartbeat_time": now,
                        "tq_id": tq_id,
                    },
                )
            ]

        # The claim took the job out of its queue already: the door's dequeue hook skips it.
        state = transition_jobs(
            ctx,
            conn,
            [job_id],
            decide,
            f"Matcher:{pilot_id}",
            known={job_id: claimed},
            params={"claimed": {job_id}},
        ).states[job_id]
        text = ctx.jobs.description(conn, job_id)
        if text is None:
            raise NotFound(f"no description for job {job_id}")
        # %j is the job ID, known only now (JSON has no escape for these characters).
        desc = JobDescription.model_validate_json(text.replace("%j", str(job_id)))
        sbs = (
            [r["sha256"] for r in ctx.sandboxes.of_job(conn, job_id, "input")]
            if desc.sandbox_refs()
            else []
        )
        lifetime = timedelta(seconds=desc.cpu_time * 2) + timedelta(
            hours=ctx.settings.jobs.job_token_hours
        )
        token = self.tokens.issue_job_token(
            state.owner, state.owner_group, job_id, pilot_id, state.reschedule_count, lifetime
        )
        return Match(
            job_id,
            state.owner,
            state.owner_group,
            desc,
            token,
            state.reschedule_count,
            ctx.settings.jobs.heartbeat_interval,
            sbs,
        )


def repair_queue_counters(ctx: Context, chunk: int = 100) -> list[CounterDrift]:
    """Recount every task queue's counters from its waiting jobs and repair those that
    drifted (they should not: a drift is a bug, logged as a warning). ``chunk`` queues per
    transaction, so claims wait at most for one chunk's recount."""
    with ctx.db.read() as conn:
        ids = ctx.queues.queue_ids(conn)
    drifts: list[CounterDrift] = []
    for i in range(0, len(ids), chunk):
        with ctx.db.write() as conn:
            drifts += ctx.queues.check_counters(conn, ids[i : i + chunk])
    return drifts


class _RowBusy(Exception):
    """The claimed job's row is held by another transaction: roll the claim back."""


class _Taken:
    """The outcome of a claim whose job was gone or busy: the queue may still hold others."""


_TAKEN = _Taken()
