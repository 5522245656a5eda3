"""Pilot factory use cases: how many pilots a queue needs, submitting them, following them.

Pull scheduling: a queue gets pilots only while jobs it could run are waiting. Its demand is
``min(jobs waiting - pilots waiting, max_waiting - pilots waiting, max_total - pilots
total)``, where waiting pilots are Submitted or Waiting and total adds Running ones. Jobs
are counted on the matcher's task-queue snapshot with the resource the queue offers, so the
site mask, platform, tags, CPU time and memory are applied exactly as at match time.

Each pilot row is written (Submitted, with its stamp) before the computing element sees the
pilot, so that a pilot starting at once finds its row when it registers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import RowMapping

from ctaprod.core.errors import NotFound
from ctaprod.core.matching import Resource
from ctaprod.core.pilot_states import PILOT_MACHINE, PilotStatus
from ctaprod.core.settings import QueueConfig
from ctaprod.core.statemachine import Change
from ctaprod.logic.context import Context
from ctaprod.logic.matcher import Matcher
from ctaprod.logic.pilot_status import change_pilots, pilot_change
from ctaprod.resources.computing import PILOT_JOB_FINAL, ComputingElement, PilotJobStatus, PilotSpec

P = PilotStatus
C = PilotJobStatus
WAITING = (P.SUBMITTED, P.WAITING)
ALIVE = (P.SUBMITTED, P.WAITING, P.RUNNING)
ENDED = (P.DONE, P.FAILED, P.ABORTED)
# A pilot offers its time *left*: by its first match a little of ``cpu_time`` is gone, so
# jobs needing all of it are not counted (a pilot sent for them would find nothing).
PILOT_STARTUP_SECONDS = 60
SOURCE = "PilotStatusAgent"
LOST_AFTER = 600.0  # seconds a pilot may be unknown to its CE before it is Lost
LOG_WINDOW = timedelta(days=1)  # how long after its end a pilot's CE output is looked for
# The end of a batch output is what explains a failure; MySQL's TEXT holds 64 KiB.
MAX_LOG_BYTES = 60_000


@dataclass(frozen=True)
class QueueDemand:
    queue: str
    jobs_waiting: int
    pilots_waiting: int
    pilots_total: int
    to_submit: int


def queue_resource(name: str, queue: QueueConfig) -> Resource:
    """The resource a pilot of this queue will offer to the matcher when it first asks."""
    return Resource(
        site=queue.site,
        ce=queue.ce,
        queue=name,
        platform=queue.platform,
        tags=list(queue.tags),
        cpu_time_left=max(0, queue.cpu_time - PILOT_STARTUP_SECONDS),
        memory_mb=queue.memory_mb,
        processors=queue.processors,
    )


def waiting_jobs(matcher: Matcher, resource: Resource) -> int:
    """Waiting jobs this resource could run (on the matcher's current snapshot)."""
    snap = matcher.snapshot()
    return sum(snap.loads[q].waiting for q in matcher.eligible_queues(resource, snap))


def queue_demand(ctx: Context, matcher: Matcher, name: str, queue: QueueConfig) -> QueueDemand:
    """How many pilots queue ``name`` should get now, with the figures behind it."""
    jobs = waiting_jobs(matcher, queue_resource(name, queue))
    with ctx.db.read() as conn:
        counts = ctx.pilots.counts(conn, queue.ce, name)
    waiting = sum(counts.get(s.value, 0) for s in WAITING)
    total = sum(counts.get(s.value, 0) for s in ALIVE)
    n = min(jobs - waiting, queue.max_waiting - waiting, queue.max_total - total)
    return QueueDemand(name, jobs, waiting, total, max(0, n))


def pilot_environment(
    ctx: Context, name: str, queue: QueueConfig, stamp: str, work_dir: str = ""
) -> dict[str, str]:
    """The ``CTAPROD_PILOT_*`` variables a pilot of this queue starts with. Never its
    credential: that goes apart (``PilotSpec.credential``), out of the payloads' reach."""
    env = {
        **queue.environment,  # checked: never a CTAPROD_PILOT_ name (settings)
        "CTAPROD_PILOT_URL": ctx.settings.server_url(),
        "CTAPROD_PILOT_STAMP": stamp,
        "CTAPROD_PILOT_SITE": queue.site,
        "CTAPROD_PILOT_CE": queue.ce,
        "CTAPROD_PILOT_QUEUE": name,
        "CTAPROD_PILOT_CPU_TIME": str(queue.cpu_time),
        "CTAPROD_PILOT_MEMORY_MB": str(queue.memory_mb),
        "CTAPROD_PILOT_PROCESSORS": str(queue.processors),
        "CTAPROD_PILOT_PLATFORM": queue.platform,
        "CTAPROD_PILOT_TAGS": ",".join(queue.tags),
        "CTAPROD_PILOT_MAX_EMPTY_MATCHES": str(queue.max_empty_matches),
    }
    if work_dir:
        env["CTAPROD_PILOT_WORK_DIR"] = work_dir
    if queue.sandbox:
        env["CTAPROD_PILOT_SANDBOX"] = queue.sandbox
    if queue.apptainer_image:
        env["CTAPROD_PILOT_APPTAINER_IMAGE"] = queue.apptainer_image
    return env


def new_stamp() -> str:
    return uuid.uuid4().hex


def submit_pilots(
    ctx: Context,
    name: str,
    queue: QueueConfig,
    ce: ComputingElement,
    stamps: Sequence[str],
    spec_for: Callable[[str], PilotSpec],
) -> list[int]:
    """Record one Submitted pilot per stamp, submit them to ``ce``, store the CE references.

    ``spec_for(stamp)`` carries the pilot's own registration credential, bound to the stamp of
    the record written here (the pilot factory's ``credential_for``): the record exists before
    the CE sees the pilot, and registering it uses the credential up. If the CE refuses,
    the rows become Aborted (with the reason) and the error is re-raised.
    """
    if not stamps:
        return []
    specs = [spec_for(s) for s in stamps]
    now = ctx.clock()
    with ctx.db.write() as conn:
        ids = ctx.pilots.add(
            conn,
            [
                {
                    "stamp": s,
                    "ce_ref": "",
                    "ce": queue.ce,
                    "queue": name,
                    "site": queue.site,
                    "status": P.SUBMITTED.value,
                    "status_reason": "Submitted by the pilot factory",
                    "submission_time": now,
                    "last_update": now,
                }
                for s in stamps
            ],
        )
    try:
        refs = ce.submit(specs)
    except Exception as exc:
        abort = [pilot_change(P.ABORTED, f"Submission failed: {exc}")]
        with ctx.db.write() as conn:
            # Only those still Submitted: one that registered meanwhile did start after all.
            change_pilots(
                ctx,
                conn,
                ids,
                lambda row: abort if row["status"] == P.SUBMITTED else None,
                source="PilotFactory",
            )
        raise
    with ctx.db.write() as conn:
        ctx.pilots.set_ce_refs(conn, dict(zip(ids, refs, strict=True)))
    return ids


@dataclass
class PilotStatusReport:
    checked: int = 0
    changed: int = 0
    logs_saved: int = 0
    missed: int = 0  # changed by someone else between the read and the write


def _target(
    current: PilotStatus, batch: PilotJobStatus, registered: bool
) -> tuple[PilotStatus, str] | None:
    """The pilot status a batch state implies (None: nothing to change)."""
    if batch in (C.QUEUED, C.RUNNING):
        # Running is the pilot's own news (registration), never the CE's.
        return (P.WAITING, f"{batch.value} in the batch system") if current is P.SUBMITTED else None
    if batch is C.DONE:
        why = "without reporting its end" if registered else "without registering"
        return P.DONE, f"Batch job ended {why}"
    if batch is C.FAILED:
        why = "" if registered else " before registering"
        return P.FAILED, f"Batch job failed{why}"
    if batch is C.ABORTED:
        return P.ABORTED, "Cancelled in the batch system"
    return None


def poll_pilots(
    ctx: Context,
    name: str,
    queue: QueueConfig,
    ce: ComputingElement,
    *,
    lost_after: float = LOST_AFTER,
    limit: int = 1000,
) -> PilotStatusReport:
    """Follow the live pilots of a queue in its CE and save CE output of ended pilots.

    When the CE first does not know a pilot, the time is kept in its row
    (``unknown_since``, so an agent restart does not start the count again); past
    ``lost_after`` seconds the pilot is Lost. A pilot the CE knows again is cleared.
    """
    report = PilotStatusReport()
    with ctx.db.read() as conn:
        rows = ctx.pilots.search(
            conn, statuses=[s.value for s in ALIVE], ce=queue.ce, queue=name, limit=limit
        )
    if rows:
        states = ce.status([_ref(r) for r in rows])
        report.checked = len(rows)
        now = ctx.clock()
        batch_of: dict[int, PilotJobStatus] = {}
        unknown_for: dict[int, float] = {}  # seconds the CE has not known the pilot
        newly_unknown: list[int] = []
        known_again: list[int] = []
        for row in rows:
            pid = int(row["pilot_id"])
            batch_of[pid] = batch = states.get(_ref(row), C.UNKNOWN)
            if batch is C.UNKNOWN:
                first: datetime | None = row["unknown_since"]
                if first is None:
                    newly_unknown.append(pid)
                    first = now
                unknown_for[pid] = (now - first).total_seconds()
            elif row["unknown_since"] is not None:
                known_again.append(pid)

        def decide(row: RowMapping) -> list[Change[PilotStatus]] | None:
            # From the state read under lock now, not the one read before asking the CE.
            pid, current = int(row["pilot_id"]), PilotStatus(row["status"])
            if current not in ALIVE:
                return None  # it reported its end meanwhile
            batch = batch_of[pid]
            decided: tuple[PilotStatus, str] | None
            if batch is C.UNKNOWN:
                unknown = unknown_for[pid]
                decided = (
                    (P.LOST, f"Unknown to the CE for {unknown:.0f} s")
                    if unknown >= lost_after
                    else None
                )
            else:
                decided = _target(current, batch, current is P.RUNNING)
            if decided is None or not PILOT_MACHINE.allowed(current, decided[0]):
                return None
            return [pilot_change(*decided)]

        with ctx.db.write() as conn:
            ctx.pilots.set_unknown_since(conn, newly_unknown, now)
            ctx.pilots.set_unknown_since(conn, known_again, None)
            result = change_pilots(ctx, conn, list(batch_of), decide, source=SOURCE, now=now)
        report.changed = len(result.final_status())
        report.missed = len(result.missed)
    report.logs_saved = save_batch_logs(ctx, name, queue, ce, limit=limit)
    return report


def save_batch_logs(
    ctx: Context, name: str, queue: QueueConfig, ce: ComputingElement, *, limit: int = 1000
) -> int:
    """Store the CE's output as the log of ended pilots that sent none of their own."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = ctx.pilots.without_log(
            conn,
            ce=queue.ce,
            queue=name,
            statuses=[s.value for s in ENDED],
            since=now - LOG_WINDOW,
            limit=limit,
        )
    if not rows:
        return 0
    states = ce.status([_ref(r) for r in rows])
    outputs: dict[int, str] = {}
    for row in rows:
        if states.get(_ref(row)) not in PILOT_JOB_FINAL:
            continue  # still writing (or forgotten by the CE): not now
        try:
            outputs[int(row["pilot_id"])] = log_tail(ce.output(_ref(row)))
        except NotFound:
            continue
    if outputs:
        with ctx.db.write() as conn:
            for pid, text in outputs.items():
                if ctx.pilots.log(conn, pid) is None:
                    ctx.pilots.save_log(conn, pid, text, now)
    return len(outputs)


def log_tail(text: str, max_bytes: int = MAX_LOG_BYTES) -> str:
    """``text``, or its end within ``max_bytes`` of UTF-8 with a note of what was cut."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= max_bytes:
        return text
    tail = data[-max_bytes:].decode("utf-8", errors="ignore")
    return f"[... {len(data) - max_bytes} bytes cut ...]\n{tail}"


def _ref(row: RowMapping) -> str:
    return str(row["ce_ref"] or row["stamp"])
