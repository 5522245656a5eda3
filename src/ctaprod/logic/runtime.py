"""What pilots and job wrappers report: registration, heartbeats, job status, pilot logs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import Connection

from ctaprod.core.errors import Conflict, CtaprodError, Forbidden, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import ACTIVE_STATES, FINAL_STATES, JOB_MACHINE, JobStatus
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.core.properties import Property, TokenKind
from ctaprod.core.schemas import HeartbeatItem, StatusReport
from ctaprod.db.jobs import JobState
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import FINISHING, job_refusal
from ctaprod.logic.job_status import Step, transition_jobs
from ctaprod.logic.pilot_status import change_one_pilot, pilot_change

J = JobStatus
log = logging.getLogger(__name__)
# What a job wrapper may set; everything else is decided by the server.
WRAPPER_TARGETS = frozenset({J.RUNNING, J.COMPLETING, J.COMPLETED, J.DONE, J.FAILED})
KILL = "Kill"
PILOT_SOURCE = "Pilot"


@dataclass(frozen=True)
class Registration:
    pilot_id: int
    session_token: str


def register_pilot(
    ctx: Context, tokens: TokenService, ident: Identity, stamp: str, site: str, ce: str, queue: str
) -> Registration:
    """A starting pilot announces itself and gets a session token bound to its pilot id.

    A factory pilot presents its registration credential: good once, for its own record
    only (``ident.stamp``); the record goes Running and the credential is used up in the same
    transaction. A hand-start pilot token registers new records only, never an existing one.
    A refused registration is logged and noted on the pilot's row (``registration_refused``).
    """
    if not ident.registration_only or not ident.has(Property.GENERIC_PILOT):
        raise Forbidden("only a pilot's registration credential can register a pilot")
    if not stamp or len(stamp) > 64:
        raise InvalidInput("a pilot stamp is 1-64 characters")
    if ident.stamp is not None and ident.stamp != stamp:
        _refuse(ctx, [stamp, ident.stamp], f"credential of pilot {ident.stamp} used for {stamp}")
    now = ctx.clock()
    refusal = ""
    with ctx.db.write() as conn:
        row = ctx.pilots.by_stamp(conn, stamp)
        if ident.stamp is not None:
            if row is None:
                refusal = "no such pilot record"
            elif not ctx.pilots.consume_registration(conn, stamp, now):
                refusal = "its registration credential was used already"
        elif row is not None:
            refusal = "a hand-start pilot token cannot register an existing pilot record"
        if not refusal:
            if row is None:
                pilot_id = ctx.pilots.add(
                    conn,
                    [
                        {
                            "stamp": stamp,
                            "ce_ref": stamp,
                            "ce": ce,
                            "queue": queue,
                            "site": site,
                            # Born Submitted, like a factory's pilot; Running through the door.
                            "status": PilotStatus.SUBMITTED.value,
                            "status_reason": "Registered without a submission record",
                            "submission_time": now,
                            "last_update": now,
                            "registered_at": now,
                        }
                    ],
                )[0]
            else:
                pilot_id = int(row["pilot_id"])
                site = site or row["site"]
            step = pilot_change(PilotStatus.RUNNING, "Registered", site=site)
            change_one_pilot(ctx, conn, pilot_id, step, source=PILOT_SOURCE, now=now)
    if refusal:
        _refuse(ctx, [stamp], refusal)
    lifetime = timedelta(days=ctx.settings.pilot_token_days)
    return Registration(pilot_id, tokens.issue_pilot_session(ident, pilot_id, lifetime))


def _refuse(ctx: Context, stamps: Sequence[str], why: str) -> NoReturn:
    """Log a refused registration, note it on the pilots concerned, raise Forbidden."""
    note = f"{ctx.clock().isoformat(timespec='seconds')} registration refused: {why}"
    log.warning("pilot %s: %s", stamps[0], note)
    with ctx.db.write() as conn:
        for stamp in dict.fromkeys(stamps):
            ctx.pilots.record_refusal(conn, stamp, note)
    raise Forbidden(f"registration of pilot {stamps[0]} refused: {why}")


def pilot_finished(
    ctx: Context,
    ident: Identity,
    pilot_id: int,
    ok: bool,
    reason: str,
    log: str | None,
    jobs_done: int,
) -> None:
    _own_pilot(ident, pilot_id)
    now = ctx.clock()
    target = PilotStatus.DONE if ok else PilotStatus.FAILED
    with ctx.db.write() as conn:
        step = pilot_change(target, reason, jobs_done=jobs_done)
        change_one_pilot(ctx, conn, pilot_id, step, source=PILOT_SOURCE, now=now)
        if log is not None:
            ctx.pilots.save_log(conn, pilot_id, log, now)


def save_pilot_log(ctx: Context, ident: Identity, pilot_id: int, log: str) -> None:
    _own_pilot(ident, pilot_id)
    with ctx.db.write() as conn:
        if ctx.pilots.get(conn, pilot_id) is None:
            raise NotFound(f"no pilot {pilot_id}")
        ctx.pilots.save_log(conn, pilot_id, log, ctx.clock())


def _own_pilot(ident: Identity, pilot_id: int) -> None:
    if ident.kind is not TokenKind.PILOT or ident.pilot_id != pilot_id:
        raise Forbidden(f"this token does not belong to pilot {pilot_id}")


@dataclass
class JobReply:
    """The outcome of one item of a heartbeat or status call: commands for the wrapper (Kill),
    or the domain error that refused it (the API maps it to an HTTP status)."""

    job_id: int
    commands: list[str] = field(default_factory=list)
    error: CtaprodError | None = None


def _job_access_error(ident: Identity, state: JobState | None, job_id: int) -> CtaprodError | None:
    """Why this pilot-side identity may not act on the job, or None if it may."""
    if state is None:
        return NotFound(f"no job {job_id}")
    if ident.kind is TokenKind.JOB:
        # Its own job, its current attempt, not ended (a Completed job's wrapper still
        # reports its end): the job-token rule. A killed job's token is refused (403): the
        # wrapper stops its payload as it does on a Kill command.
        return job_refusal(ident, state, job_id, allowed=FINISHING)
    if ident.kind is TokenKind.PILOT and ident.pilot_id is not None:
        if state.pilot_id != ident.pilot_id:
            return Forbidden(f"job {job_id} is not assigned to pilot {ident.pilot_id}")
        return None
    return Forbidden("heartbeats and job reports need a job token or a pilot session token")


def heartbeats(ctx: Context, ident: Identity, items: Sequence[HeartbeatItem]) -> list[JobReply]:
    """Record heartbeats; the reply carries commands such as Kill.

    One SELECT of the jobs' states (for the access checks) and one executemany UPDATE for the
    whole call; a Stalled job that beats again goes back to Running from the state read.
    """
    now = ctx.clock()
    results: list[JobReply] = []
    with ctx.db.write() as conn:
        states = ctx.jobs.states(conn, [i.job_id for i in items])
        resumed: list[int] = []
        updates: list[dict[str, object]] = []
        for item in items:
            state = states.get(item.job_id)
            err = _job_access_error(ident, state, item.job_id)
            res = JobReply(item.job_id)
            results.append(res)
            if err is not None or state is None:
                res.error = err
                continue
            if state.kill_requested or state.status not in ACTIVE_STATES:
                res.commands.append(KILL)
                continue
            if state.status is J.STALLED:
                resumed.append(item.job_id)
            updates.append(
                {
                    "heartbeat_time": now,
                    "cpu_seconds": item.cpu_seconds,
                    "wall_seconds": item.wall_seconds,
                    "peak_rss_bytes": item.peak_rss_bytes,
                    "b_id": item.job_id,
                }
            )
        if resumed:
            result = transition_jobs(
                ctx,
                conn,
                resumed,
                lambda s: [Step(J.RUNNING, "Heartbeat resumed")],
                "JobWrapper",
                known=states,
            )
            _refuse_missed(result.missed_ids(), results)
        ctx.jobs.record_heartbeats(conn, updates)
    return results


# Usage figures a report may carry, with or without a status change.
USAGE = ("exit_code", "cpu_seconds", "wall_seconds", "peak_rss_bytes")


@dataclass
class _Round:
    """Checked reports applied together: at most one per job, so their order does not matter.

    ``known`` holds each changing job's state before its step (what ``transition_jobs`` checks
    and conditions its UPDATE on).
    """

    now: datetime
    fields: list[dict[str, object]] = field(default_factory=list)
    history: list[dict[str, object]] = field(default_factory=list)
    steps: dict[int, Step] = field(default_factory=dict)
    known: dict[int, JobState] = field(default_factory=dict)
    jobs: set[int] = field(default_factory=set)

    def flush(self, ctx: Context, conn: Connection) -> set[int]:
        """Write the round; returns the jobs whose status change was missed."""
        ctx.jobs.update_reported(conn, self.fields, self.now)
        ctx.jobs.add_history(conn, self.history)
        if not self.steps:
            return set()
        steps = self.steps
        return transition_jobs(
            ctx,
            conn,
            list(steps),
            lambda s: [steps[s.job_id]],
            "JobWrapper",
            known=self.known,
        ).missed_ids()


def report_statuses(
    ctx: Context, ident: Identity, reports: Sequence[StatusReport]
) -> list[JobReply]:
    """Apply wrapper status reports in order; each is checked by the job state machine.

    Reports are checked one by one against the job's state as the previous reports of the call
    left it, and applied in bulk: field updates (application or minor status, usage) in one
    executemany UPDATE plus one history INSERT, status changes in one ``transition_jobs`` call
    from the states already read, parameters in one DELETE and one INSERT. A job reported on
    twice starts a new round, so that its changes reach the database in the order sent.
    """
    results: list[JobReply] = []
    with ctx.db.write() as conn:
        states = ctx.jobs.states(conn, [r.job_id for r in reports])
        current = _Round(ctx.clock())
        parameters: dict[int, dict[str, str]] = {}
        for rep in reports:
            res = JobReply(rep.job_id)
            results.append(res)
            state = states.get(rep.job_id)
            err = _job_access_error(ident, state, rep.job_id)
            if err is not None and _repeated_end(ident, state, rep):
                continue  # its answer was lost: the end it reports is there already
            if err is None and rep.status is not None and rep.status not in WRAPPER_TARGETS:
                err = Forbidden(f"a job wrapper cannot set status {rep.status.value}")
            if err is not None or state is None:
                res.error = err
                continue
            if rep.job_id in current.jobs:
                _refuse_missed(current.flush(ctx, conn), results)
                current = _Round(ctx.clock())
            try:
                states[rep.job_id] = _check_report(current, state, rep)
            except CtaprodError as exc:
                res.error = exc
                if state.kill_requested or state.status in (J.KILLED, J.DELETED):
                    res.commands.append(KILL)
                continue
            if rep.parameters:
                parameters.setdefault(rep.job_id, {}).update(rep.parameters)
        _refuse_missed(current.flush(ctx, conn), results)
        ctx.jobs.set_many_parameters(conn, parameters)
    return results


def _repeated_end(ident: Identity, state: JobState | None, rep: StatusReport) -> bool:
    """Whether ``rep`` repeats, for the job's current attempt, the final status the job has
    (a wrapper whose first report went through but whose answer was lost): harmless, ok."""
    return (
        ident.kind is TokenKind.JOB
        and state is not None
        and rep.status is not None
        and rep.status is state.status
        and state.status in FINAL_STATES
        and job_refusal(ident, state, rep.job_id, allowed=None) is None
    )


def _refuse_missed(missed: set[int], replies: Sequence[JobReply]) -> None:
    """Say so in the replies of jobs whose change matched nothing (they changed meanwhile)."""
    if not missed:
        return
    for reply in replies:
        if reply.job_id in missed and reply.error is None:
            reply.error = Conflict(f"job {reply.job_id} changed meanwhile; report again")


def _check_report(batch: _Round, state: JobState, rep: StatusReport) -> JobState:
    """Check one report against the job's state and add it to ``batch``; returns the job's
    state once the report is applied. Raises the error that refuses the report."""
    now = batch.now
    values: dict[str, object] = {n: v for n in USAGE if (v := getattr(rep, n)) is not None}
    if rep.status is None:
        if state.status not in ACTIVE_STATES and state.status is not J.COMPLETED:
            raise Conflict(f"job {state.job_id} is {state.status.value}: no more updates")
        if rep.application_status is not None:
            values["application_status"] = rep.application_status
        if rep.minor_status:
            values["minor_status"] = rep.minor_status
        if values:
            batch.fields.append({"job_id": state.job_id, **values})
        if rep.minor_status or rep.application_status is not None:
            # Every change is in the history, status or not (DESIGN section 3).
            batch.history.append(
                {
                    "job_id": state.job_id,
                    "status": state.status.value,
                    "minor_status": rep.minor_status,
                    "time": now,
                    "source": "JobWrapper",
                    "application_status": rep.application_status or "",
                }
            )
        batch.jobs.add(state.job_id)
        return state
    if rep.status is J.RUNNING:
        values["start_time"] = now
        values["heartbeat_time"] = now
    step = Step(rep.status, rep.minor_status, rep.application_status, values or None)
    # The state machine's verdict, raised here for this report alone.
    JOB_MACHINE.check(state.job_id, state.status, rep.status)
    batch.steps[state.job_id] = step
    batch.known[state.job_id] = state
    batch.jobs.add(state.job_id)
    return replace(state, status=rep.status)
