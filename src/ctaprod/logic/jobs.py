"""Job submission and user control: submit, kill, reschedule, delete."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from ctaprod.core.errors import (
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    TooLarge,
)
from ctaprod.core.identity import Identity
from ctaprod.core.jdl import format_jdl
from ctaprod.core.job_states import ACTIVE_STATES, KILLABLE, RESCHEDULABLE, JobStatus
from ctaprod.core.jobdesc import expand, fill_job_id, parse_submission
from ctaprod.core.jobs import LFN_PREFIX, SANDBOX_REF, JobDescription
from ctaprod.core.matching import Requirements
from ctaprod.core.properties import Property, TokenKind
from ctaprod.db.jobs import JobState
from ctaprod.logic import input_data
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import FINISHING, job_refusal
from ctaprod.logic.job_status import JobResult, Step, load_descriptions, transition_jobs

J = JobStatus
ACCEPTED = "Job accepted"
TO_PILOTS = "Pilot Agent Submission"
SUBMISSION = "JobManager"


@dataclass(frozen=True)
class SubmitResult:
    job_ids: list[int]


def parse_descriptions(
    ctx: Context, text: str | None, fmt: str, docs: Sequence[dict[str, object]] | None
) -> list[JobDescription]:
    """Expand a JDL/YAML/JSON text or already-parsed documents into job descriptions."""
    if text is not None:
        return parse_submission(text, fmt, ctx.limits)
    if not docs:
        raise InvalidInput("nothing to submit: give a description text or documents")
    out: list[JobDescription] = []
    for raw in docs:
        out.extend(expand(raw, ctx.limits))
        if len(out) > ctx.limits.max_jobs_per_call:
            raise TooLarge(f"more than {ctx.limits.max_jobs_per_call} jobs in one submission")
    return out


def submit_jobs(ctx: Context, ident: Identity, descs: Sequence[JobDescription]) -> SubmitResult:
    """Validate and store jobs in one transaction; they end Waiting in their task queues.

    InputData must be in the catalog (``InvalidInput`` listing the missing LFNs); its
    replica sites shape the task queues (see :mod:`ctaprod.logic.input_data`)."""
    ident.require_user()
    ident.require(Property.NORMAL_USER, Property.PRODUCTION_MANAGEMENT)
    if not descs:
        raise InvalidInput("no job to submit")
    for i, d in enumerate(descs):
        for entry in d.input_sandbox:
            if not SANDBOX_REF.match(entry) and not entry.upper().startswith(LFN_PREFIX):
                where = f"job {i}: " if len(descs) > 1 else ""
                raise InvalidInput(
                    f"{where}InputSandbox file {entry!r} was not uploaded; "
                    "submit with the ctaprod client, which uploads local files"
                )
    # InputData is looked up before the write transaction: missing files stop it here.
    reqs = input_data.job_requirements(ctx, [(d, ident.user, ident.group) for d in descs])
    with ctx.db.write() as conn:
        return SubmitResult(store_jobs(ctx, conn, ident, descs, reqs))


def store_jobs(
    ctx: Context,
    conn: Connection,
    ident: Identity,
    descs: Sequence[JobDescription],
    reqs: Sequence[Requirements],
) -> list[int]:
    """Write checked jobs (descriptions and their task-queue requirements) in ``conn``'s
    transaction and take them Received -> Checking -> Waiting through the door; their ids.
    What a caller that must create jobs together with its own rows (a transformation's
    task submission) uses; :func:`submit_jobs` checks the input first."""
    now = ctx.clock()
    shas = sorted({s for d in descs for s in d.sandbox_refs()})
    owned = ctx.sandboxes.owned(conn, shas, ident.user)
    missing = [s for s in shas if s not in owned]
    if missing:
        raise NotFound(f"input sandbox SB:{missing[0]} is not among your uploads")
    rows, texts = [], []
    for d in descs:
        rows.append(
            {
                "status": J.RECEIVED.value,
                "minor_status": ACCEPTED,
                "application_status": "Unknown",
                "owner": ident.user,
                "owner_group": ident.group,
                "job_name": d.job_name,
                "job_group": d.job_group,
                "job_type": d.job_type,
                "site": d.sites[0] if len(d.sites) == 1 else "ANY",
                "priority": d.priority,
                "cpu_time": d.cpu_time,
                "submission_time": now,
                "last_update": now,
                "reschedule_count": 0,
                "kill_requested": False,
            }
        )
        texts.append(d.model_dump_json(by_alias=True))
    ids = ctx.jobs.insert_jobs(conn, rows, texts)
    # Custom attributes (kept as DIRAC keeps them) are shown as job parameters; %j in
    # them is known now.
    ctx.jobs.set_many_parameters(
        conn,
        {
            i: {k: fill_job_id(v, i) for k, v in d.custom_parameters().items()}
            for i, d in zip(ids, descs, strict=True)
            if d.custom_attributes
        },
    )
    # The job's first history entry is its creation, Received; the rest is the door's.
    ctx.jobs.add_history(
        conn,
        [
            {
                "job_id": i,
                "status": J.RECEIVED.value,
                "minor_status": ACCEPTED,
                "application_status": "Unknown",
                "time": now,
                "source": SUBMISSION,
            }
            for i in ids
        ],
    )
    ctx.sandboxes.assign(
        conn,
        [
            {"job_id": i, "kind": "input", "sb_id": owned[s]}
            for i, d in zip(ids, descs, strict=True)
            for s in d.sandbox_refs()
        ],
    )
    ctx.sandboxes.touch(conn, list(owned.values()), now)
    # New rows are invisible to other transactions until commit: their state is known.
    known = {i: JobState(i, J.RECEIVED, ident.user, ident.group, None, 0, False) for i in ids}
    queue = {i: (r, d.priority) for i, r, d in zip(ids, reqs, descs, strict=True)}
    checked = [Step(J.CHECKING, "JobSanity", "Unknown"), Step(J.WAITING, TO_PILOTS, "Unknown")]
    transition_jobs(
        ctx, conn, ids, lambda _: checked, SUBMISSION, known=known, params={"queue": queue}
    )
    return ids


def load_description(ctx: Context, conn: Connection, job_id: int) -> JobDescription:
    """The description of one job (NotFound without one)."""
    return load_descriptions(ctx, conn, [job_id])[job_id]


def jdl_of(desc: JobDescription) -> str:
    return format_jdl(json.loads(json.dumps(desc.to_jdl_dict())))


def check_access(ident: Identity, state: JobState) -> None:
    """Users act on their own jobs; JobAdministrators on all; hide others' jobs (404)."""
    if ident.kind is TokenKind.JOB:
        refusal = job_refusal(ident, state, state.job_id, allowed=FINISHING)
        if refusal is not None:
            raise refusal
        return
    if ident.kind is TokenKind.PILOT:
        if state.pilot_id is None or state.pilot_id != ident.pilot_id:
            raise Forbidden(f"job {state.job_id} is not assigned to this pilot")
        return
    if state.owner != ident.user and not ident.is_job_admin:
        raise NotFound(f"no job {state.job_id}")


def _owned(
    ctx: Context, conn: Connection, ident: Identity, job_ids: Sequence[int]
) -> dict[int, JobState]:
    """The (locked) states of the jobs, each checked for the user's access."""
    ident.require_user()
    states = ctx.jobs.states(conn, job_ids)
    for jid in job_ids:
        if jid not in states:
            raise NotFound(f"no job {jid}")
        check_access(ident, states[jid])
    return states


def kill_step(s: JobState, minor: str) -> Step:
    """Killed now; an active job also gets the kill command with its next heartbeat."""
    active = s.status in ACTIVE_STATES
    return Step(
        J.KILLED,
        "Marked for termination" if active else minor,
        values={"kill_requested": True} if active else None,
    )


def kill_jobs(ctx: Context, ident: Identity, job_ids: Sequence[int]) -> JobResult:
    """Kill jobs (all or none: an illegal one raises); running ones get the kill command with
    their next heartbeat. A fixed number of statements whatever the number of jobs."""
    with ctx.db.write() as conn:
        states = _owned(ctx, conn, ident, job_ids)
        return transition_jobs(
            ctx,
            conn,
            job_ids,
            lambda s: [kill_step(s, "Killed by user")],
            f"user:{ident.user}",
            known=states,
        )


def delete_jobs(ctx: Context, ident: Identity, job_ids: Sequence[int]) -> JobResult:
    """Mark jobs Deleted (killing them first if they are not finished)."""
    with ctx.db.write() as conn:
        states = _owned(ctx, conn, ident, job_ids)

        def decide(s: JobState) -> list[Step]:
            deleted = Step(J.DELETED, "Deleted by user")
            if s.status in KILLABLE:
                return [kill_step(s, "Killed before deletion"), deleted]
            return [deleted]

        return transition_jobs(ctx, conn, job_ids, decide, f"user:{ident.user}", known=states)


def reschedule_jobs(
    ctx: Context,
    ident: Identity | None,
    job_ids: Sequence[int],
    reason: str = "Rescheduled by user",
    *,
    strict: bool = True,
    conn: Connection | None = None,
) -> dict[int, JobStatus]:
    """Send jobs back to Waiting (or Failed past the reschedule limit). Returns new statuses.

    ``ident`` None means the system (agents) acts; ``conn`` joins the caller's transaction
    (nothing else is opened). Not ``strict``: jobs that are missing, not reschedulable or
    finished past the limit are left alone. A fixed number of statements for any number of
    jobs: the states, the descriptions of the jobs going back, one conditional UPDATE per
    outcome, the history and the task queues.
    """
    if conn is None:
        with ctx.db.write() as c:
            return reschedule_jobs(ctx, ident, job_ids, reason, strict=strict, conn=c)
    if ident is not None:
        states = _owned(ctx, conn, ident, job_ids)
    else:
        states = ctx.jobs.states(conn, job_ids)
    limit = ctx.settings.jobs.max_reschedules
    back = [
        j
        for j, s in states.items()
        if s.reschedule_count < limit and (strict or s.status in RESCHEDULABLE)
    ]
    # The descriptions restore a job's one site (the match wrote the pilot's over it) and
    # give the enqueue hook the requirements, read once for all the jobs.
    descs = load_descriptions(ctx, conn, back)

    def decide(s: JobState) -> list[Step] | None:
        if not strict and s.status not in RESCHEDULABLE:
            return None
        if s.reschedule_count >= limit:
            if s.status in (J.FAILED, J.KILLED):
                if not strict:
                    return None
                # Already finished: say why it stays so (not "cannot go to Failed").
                raise InvalidTransition(
                    "job",
                    s.job_id,
                    s.status.value,
                    J.RESCHEDULED.value,
                    f"the limit of {limit} reschedulings is reached",
                )
            return [Step(J.FAILED, f"Maximum of {limit} reschedulings reached ({reason})")]
        sites = descs[s.job_id].sites
        return [
            Step(
                J.RESCHEDULED,
                reason,
                values={
                    "reschedule_count": s.reschedule_count + 1,
                    "pilot_id": None,
                    "kill_requested": False,
                    "heartbeat_time": None,
                    "start_time": None,
                    "end_time": None,
                    "exit_code": None,
                },
            ),
            Step(
                J.WAITING,
                TO_PILOTS,
                "Unknown",
                values={"site": sites[0] if len(sites) == 1 else "ANY"},
            ),
        ]

    source = f"user:{ident.user}" if ident else "StalledJobAgent"
    result = transition_jobs(
        ctx,
        conn,
        job_ids,
        decide,
        source,
        strict=strict,
        known=states,
        params={"descriptions": descs},
    )
    return result.final_status()
