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
from ctaprod.logic.job_status import Step, transition_jobs

J = JobStatus


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
    now = ctx.clock()
    shas = sorted({s for d in descs for s in d.sandbox_refs()})
    with ctx.db.write() as conn:
        owned = ctx.sandboxes.owned(conn, shas, ident.user)
        missing = [s for s in shas if s not in owned]
        if missing:
            raise NotFound(f"input sandbox SB:{missing[0]} is not among your uploads")
        rows, texts = [], []
        for d in descs:
            rows.append(
                {
                    "status": J.WAITING.value,
                    "minor_status": "Job accepted",
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
        ctx.jobs.add_history(
            conn,
            (
                {
                    "job_id": i,
                    "status": s.value,
                    "minor_status": m,
                    "application_status": "Unknown",
                    "time": now,
                    "source": "JobManager",
                }
                for i in ids
                for s, m in (
                    (J.RECEIVED, "Job accepted"),
                    (J.CHECKING, "JobSanity"),
                    (J.WAITING, "Pilot Agent Submission"),
                )
            ),
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
        enqueue(
            ctx,
            conn,
            [(i, d, ident.user, ident.group) for i, d in zip(ids, descs, strict=True)],
            reqs,
        )
    return SubmitResult(ids)


def enqueue(
    ctx: Context,
    conn: Connection,
    items: Sequence[tuple[int, JobDescription, str, str]],
    reqs: Sequence[Requirements] | None = None,
) -> None:
    """Put waiting jobs (id, description, owner, group) into their task queues; ``reqs``
    (one per item) are computed, with the input-data sites, when not given."""
    if reqs is None:
        reqs = input_data.job_requirements(
            ctx, [(d, owner, group) for _, d, owner, group in items], strict=False
        )
    tq_ids = ctx.queues.ensure_queues(conn, reqs, ctx.clock())
    ctx.queues.enqueue(
        conn,
        [
            {"job_id": jid, "tq_id": tq_ids[r.key()], "priority": d.priority}
            for (jid, d, _, _), r in zip(items, reqs, strict=True)
        ],
    )


def load_description(ctx: Context, conn: Connection, job_id: int) -> JobDescription:
    text = ctx.jobs.description(conn, job_id)
    if text is None:
        raise NotFound(f"no description for job {job_id}")
    return JobDescription.model_validate_json(text)


def jdl_of(desc: JobDescription) -> str:
    return format_jdl(json.loads(json.dumps(desc.to_jdl_dict())))


def check_access(ident: Identity, state: JobState) -> None:
    """Users act on their own jobs; JobAdministrators on all; hide others' jobs (404)."""
    if ident.kind is TokenKind.JOB:
        if ident.job_id != state.job_id:
            raise Forbidden(f"this job token is for job {ident.job_id}, not {state.job_id}")
        return
    if ident.kind is TokenKind.PILOT:
        if state.pilot_id is None or state.pilot_id != ident.pilot_id:
            raise Forbidden(f"job {state.job_id} is not assigned to this pilot")
        return
    if state.owner != ident.user and not ident.is_job_admin:
        raise NotFound(f"no job {state.job_id}")


def _owned(ctx: Context, conn: Connection, ident: Identity, job_ids: Sequence[int]) -> None:
    ident.require_user()
    states = ctx.jobs.states(conn, job_ids)
    for jid in job_ids:
        if jid not in states:
            raise NotFound(f"no job {jid}")
        check_access(ident, states[jid])


def kill_jobs(ctx: Context, ident: Identity, job_ids: Sequence[int]) -> None:
    """Kill jobs; running ones get the kill command with their next heartbeat."""
    with ctx.db.write() as conn:
        _owned(ctx, conn, ident, job_ids)

        def decide(s: JobState) -> list[Step]:
            if s.status not in KILLABLE:
                return [Step(J.KILLED)]  # let the state machine name the refusal
            active = s.status in ACTIVE_STATES
            return [
                Step(
                    J.KILLED,
                    "Marked for termination" if active else "Killed by user",
                    values={"kill_requested": True} if active else None,
                )
            ]

        states = transition_jobs(ctx, conn, job_ids, decide, f"user:{ident.user}")
        ctx.queues.dequeue(conn, [j for j, s in states.items() if s.status is J.WAITING])


def delete_jobs(ctx: Context, ident: Identity, job_ids: Sequence[int]) -> None:
    """Mark jobs Deleted (killing them first if they are not finished)."""
    with ctx.db.write() as conn:
        _owned(ctx, conn, ident, job_ids)

        def decide(s: JobState) -> list[Step]:
            if s.status in KILLABLE:
                active = s.status in ACTIVE_STATES
                return [
                    Step(
                        J.KILLED,
                        "Killed before deletion",
                        values={"kill_requested": True} if active else None,
                    ),
                    Step(J.DELETED, "Deleted by user"),
                ]
            return [Step(J.DELETED, "Deleted by user")]

        states = transition_jobs(ctx, conn, job_ids, decide, f"user:{ident.user}")
        ctx.queues.dequeue(conn, [j for j, s in states.items() if s.status is J.WAITING])


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

    ``ident`` None means the system (agents) acts; ``conn`` joins an existing transaction.
    """
    if conn is None:
        with ctx.db.write() as c:
            return reschedule_jobs(ctx, ident, job_ids, reason, strict=strict, conn=c)
    if ident is not None:
        _owned(ctx, conn, ident, job_ids)
    limit = ctx.settings.jobs.max_reschedules
    outcome: dict[int, JobStatus] = {}

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
            outcome[s.job_id] = J.FAILED
            return [
                Step(
                    J.FAILED,
                    f"Maximum of {limit} reschedulings reached ({reason})",
                    values={"end_time": ctx.clock()},
                )
            ]
        outcome[s.job_id] = J.WAITING
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
            Step(J.WAITING, "Pilot Agent Submission", "Unknown", values={"site": "ANY"}),
        ]

    source = f"user:{ident.user}" if ident else "StalledJobAgent"
    states = transition_jobs(ctx, conn, job_ids, decide, source, strict=strict)
    back = [j for j, st in outcome.items() if st is J.WAITING]
    if back:
        descs = {j: load_description(ctx, conn, j) for j in back}
        for j, d in descs.items():
            if len(d.sites) == 1:  # the matched site was written over the job's one site
                ctx.jobs.update_fields(conn, j, {"site": d.sites[0]})
        enqueue(ctx, conn, [(j, descs[j], states[j].owner, states[j].owner_group) for j in back])
    return outcome
