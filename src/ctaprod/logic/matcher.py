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
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from ctaprod.core.errors import CtaprodError, Forbidden, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobdesc import substitute_job_id
from ctaprod.core.jobs import JobDescription
from ctaprod.core.matching import Requirements, Resource, eligible
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.core.properties import Property, TokenKind
from ctaprod.db.engine import is_deadlock
from ctaprod.db.jobs import JobState
from ctaprod.db.taskqueues import CounterDrift, QueueLoad
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs

J = JobStatus
log = logging.getLogger(__name__)


Grouping = dict[str, dict[str, list[int]]]  # owner group -> owner -> task queues


@dataclass
class Snapshot:
    taken: float
    queues: dict[int, Requirements]
    loads: dict[int, QueueLoad]
    banned_sites: frozenset[str]
    shares: dict[str, float]
    # (owner, group) pairs whose jobs may run: an enabled user still in the group (None: all).
    # The jobs of a disabled user or of a group they left stay waiting: their job token
    # would be refused at its first use.
    owners: frozenset[tuple[str, str]] | None = None
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
            res.ce,  # GridCE requirements
            res.platform,
            tuple(sorted(res.all_tags())),
            usable,
            tuple(sorted(res.job_types)),
            tuple(sorted(res.owner_groups)),
        )


@dataclass(frozen=True)
class MatchRequest:
    """A pilot asking for a job: who asks (its token's identity), which pilot, its slot."""

    ident: Identity
    pilot_id: int
    resource: Resource


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
                self.ctx.auth.active_owners(conn),
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
            owners = snap.owners
            found = [
                q
                for q, req in snap.queues.items()
                if eligible(req, res, tags, snap.banned_sites)
                and (owners is None or (req.owner, req.owner_group) in owners)
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
        found = self.match_many([MatchRequest(ident, pilot_id, res)])[0]
        if isinstance(found, Exception):
            raise found
        return found

    def match_many(self, reqs: Sequence[MatchRequest]) -> list[Match | CtaprodError | None]:
        """Serve several match requests in one write transaction (what concurrent requests
        to one server process are batched into): one pilot check, one claim per request,
        one door transition, one read of descriptions and sandboxes for them all.

        Each request gets its own outcome: a match, None (nothing it can run), or the error
        that refuses it (unknown or stopped pilot, not a pilot token). When the batch cannot
        be served whole (a claimed job's row is held by a kill or reschedule, a deadlock on
        the queue rows, a broken description), it is rolled back and each request is served
        alone, so one request never costs another its job or its error."""
        out: list[Match | CtaprodError | None] = [None] * len(reqs)
        todo: list[int] = []
        for i, r in enumerate(reqs):
            if r.ident.kind is not TokenKind.PILOT or not r.ident.has(Property.GENERIC_PILOT):
                out[i] = Forbidden("only a pilot token can ask for jobs")
            elif r.ident.pilot_id != r.pilot_id:
                # A pilot asks with the session token its registration gave it, for itself.
                out[i] = Forbidden(
                    f"asking for jobs as pilot {r.pilot_id} needs that pilot's session token"
                )
            else:
                todo.append(i)
        if len(todo) > 1:
            try:
                for i, found in self._serve(reqs, todo).items():
                    out[i] = found
                return out
            except (_RowBusy, CtaprodError, DBAPIError) as exc:
                if isinstance(exc, DBAPIError) and not is_deadlock(exc):
                    raise
                log.debug("batch of %d matches served one by one: %r", len(todo), exc)
        for i in todo:
            out[i] = self._alone(reqs[i])
        return out

    def _alone(self, req: MatchRequest) -> Match | CtaprodError | None:
        """One request in its own transaction; a claim that met a busy job row is rolled back
        (the job stays in its queue) and tried again."""
        for _ in range(self.max_attempts):
            try:
                return self._serve([req], [0])[0]
            except CtaprodError as exc:
                return exc
            except _RowBusy:
                continue
        return None

    def _serve(
        self, reqs: Sequence[MatchRequest], todo: list[int]
    ) -> dict[int, Match | CtaprodError | None]:
        """Serve ``reqs[i]`` for i in ``todo`` in one write transaction (see match_many)."""
        ctx = self.ctx
        snap = self.snapshot()
        results: dict[int, Match | CtaprodError | None] = {}
        pilot_ids = [reqs[i].pilot_id for i in todo]
        first: dict[int, int] = {}  # the first draw of each request, done before writing
        for i in todo:
            tq_id = self._pick(reqs[i].resource, snap, set())
            if tq_id is not None:
                first[i] = tq_id
        if not first:
            # Nothing any of them can run: no write transaction, only the pilot check.
            with ctx.db.read() as conn:
                known = ctx.pilots.statuses(conn, pilot_ids)
            return {i: self._pilot_refusal(reqs[i].pilot_id, known) for i in todo}
        with ctx.db.write() as conn:
            known = ctx.pilots.statuses(conn, pilot_ids)
            live: list[int] = []
            for i in todo:
                refusal = self._pilot_refusal(reqs[i].pilot_id, known)
                if refusal is None:
                    live.append(i)
                else:
                    results[i] = refusal
            got = self._claim_all(conn, snap, reqs, [i for i in live if i in first], first)
            results.update({i: None for i in live if i not in got})
            if got:
                results.update(self._assign(conn, reqs, got))
        return results

    @staticmethod
    def _pilot_refusal(pilot_id: int, statuses: Mapping[int, str]) -> CtaprodError | None:
        """Only a registered, Running pilot gets jobs."""
        status = statuses.get(pilot_id)
        if status is None:
            return NotFound(f"no pilot {pilot_id}")
        if status != PilotStatus.RUNNING.value:
            return Forbidden(f"pilot {pilot_id} is {status}, not Running: no more jobs")
        return None

    def _pick(self, res: Resource, snap: Snapshot, skip: set[int]) -> int | None:
        """The queue to claim from for this resource: data-local queues first."""
        near, anywhere = self._groupings(res, snap)
        tq_id = self._draw(near, snap, skip)
        return self._draw(anywhere, snap, skip) if tq_id is None else tq_id

    def _claim_all(
        self,
        conn: Connection,
        snap: Snapshot,
        reqs: Sequence[MatchRequest],
        live: list[int],
        first: Mapping[int, int],
    ) -> dict[int, tuple[int, JobState]]:
        """Claim one Waiting job (row-locked) per request of ``live``: request -> (queue,
        job state). A request that finds nothing within ``max_attempts`` claims is left out.

        A queue found empty is skipped (the snapshot was stale); a claimed entry whose job
        is gone or no longer Waiting is a stale queue entry, its removal kept, and the
        request claims again. Kill, delete and reschedule lock the job row, then the queue
        row: holding a queue row, never wait for a job row (a deadlock): a busy one raises
        _RowBusy and the transaction rolls the claims back. ``first`` holds each request's
        first draw. The claims are counted out of their queues at the end, in queue order."""
        ctx = self.ctx
        skips: dict[int, set[int]] = {i: set() for i in live}
        tries = dict.fromkeys(live, 0)
        got: dict[int, tuple[int, JobState]] = {}
        taken: Counter[int] = Counter()
        empty: set[int] = set()
        want = list(live)
        while want:
            claimed: dict[int, tuple[int, int]] = {}
            for i in want:
                while tries[i] < self.max_attempts:
                    tries[i] += 1
                    tq_id = (
                        first[i] if tries[i] == 1 else self._pick(reqs[i].resource, snap, skips[i])
                    )
                    if tq_id is None:
                        tries[i] = self.max_attempts
                        break
                    job_id = ctx.queues.claim(conn, tq_id, settle=False)
                    if job_id is not None:
                        claimed[i] = (tq_id, job_id)
                        taken[tq_id] += 1
                        break
                    skips[i].add(tq_id)
                    empty.add(tq_id)
                    with self._lock:
                        if self._snap is snap:
                            snap.loads.pop(tq_id, None)
            if not claimed:
                break
            ids = [job_id for _, job_id in claimed.values()]
            states = ctx.jobs.states(conn, ids, skip_locked=True)
            unseen = [j for j in ids if j not in states]
            # Not locked for us: gone, or held by another transaction (read without a lock:
            # waiting for its lock while holding queue entries is a deadlock).
            if any(ctx.jobs.get(conn, j) is not None for j in unseen):
                raise _RowBusy
            want = []
            for i, (tq_id, job_id) in claimed.items():
                state = states.get(job_id)
                if state is not None and state.status is J.WAITING:
                    got[i] = (tq_id, state)
                elif tries[i] < self.max_attempts:
                    want.append(i)
        ctx.queues.settle(conn, taken, empty)
        return got

    def _assign(
        self,
        conn: Connection,
        reqs: Sequence[MatchRequest],
        got: Mapping[int, tuple[int, JobState]],
    ) -> dict[int, Match | CtaprodError | None]:
        """Move the claimed (row-locked, Waiting) jobs to Matched and build the replies."""
        ctx = self.ctx
        now = ctx.clock()
        of_job = {state.job_id: (i, tq_id) for i, (tq_id, state) in got.items()}

        def decide(s: JobState) -> list[Step]:
            i, tq_id = of_job[s.job_id]
            req = reqs[i]
            values = {
                "pilot_id": req.pilot_id,
                "site": req.resource.site,
                "heartbeat_time": now,
                "tq_id": tq_id,
            }
            return [Step(J.MATCHED, "Assigned to pilot", values=values)]

        job_ids = sorted(of_job)
        # The claims took the jobs out of their queues already: the dequeue hook skips them.
        states = transition_jobs(
            ctx,
            conn,
            job_ids,
            decide,
            "Matcher",
            known={state.job_id: state for _, state in got.values()},
            params={
                "claimed": set(job_ids),
                "sources": {j: f"Matcher:{reqs[i].pilot_id}" for j, (i, _) in of_job.items()},
            },
        ).states
        texts = ctx.jobs.descriptions(conn, job_ids)
        descs: dict[int, JobDescription] = {}
        for job_id in job_ids:
            text = texts.get(job_id)
            if text is None:
                raise NotFound(f"no description for job {job_id}")
            desc = JobDescription.model_validate_json(text)
            if "%j" in text:  # the job ID, known only now (core's one rule for %j)
                desc = substitute_job_id(desc, job_id)
            descs[job_id] = desc
        with_sandboxes = [j for j, d in descs.items() if d.sandbox_refs()]
        sbs = ctx.sandboxes.of_jobs(conn, with_sandboxes, "input") if with_sandboxes else {}
        out: dict[int, Match | CtaprodError | None] = {}
        for job_id in job_ids:
            i, _ = of_job[job_id]
            state, desc = states[job_id], descs[job_id]
            lifetime = timedelta(seconds=desc.cpu_time * 2) + timedelta(
                hours=ctx.settings.jobs.job_token_hours
            )
            token = self.tokens.issue_job_token(
                state.owner,
                state.owner_group,
                job_id,
                reqs[i].pilot_id,
                state.reschedule_count,
                lifetime,
            )
            out[i] = Match(
                job_id,
                state.owner,
                state.owner_group,
                desc,
                token,
                state.reschedule_count,
                ctx.settings.jobs.heartbeat_interval,
                sbs.get(job_id, []),
            )
        return out


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
    """A claimed job's row is held by another transaction: roll the claims back."""
