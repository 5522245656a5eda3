"""The one entry point for job status changes: check with the state machine, then apply.

Every caller (API, wrapper reports, agents) goes through :func:`transition_jobs` inside its
own write transaction. Rows are read (and locked where the engine has concurrent writers),
each transition is checked against ``JOB_MACHINE``, and the DB applies them with UPDATEs
conditional on the observed status, recording the history in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ctaprod.core.errors import InvalidTransition, NotFound
from ctaprod.core.job_states import JOB_MACHINE, JobStatus
from ctaprod.db.jobs import JobState, Transition
from ctaprod.logic.context import Context

J = JobStatus


@dataclass(frozen=True)
class Step:
    """A requested change: target status plus what to write with it."""

    target: JobStatus
    minor_status: str = ""
    application_status: str | None = None
    values: Mapping[str, Any] | None = None


def plan(state: JobState, steps: Sequence[Step]) -> list[Transition]:
    """Check a chain of steps from the job's current state; raise InvalidTransition if illegal."""
    out = []
    current = state.status
    for step in steps:
        JOB_MACHINE.check(state.job_id, current, step.target)
        out.append(
            Transition(
                state.job_id,
                current,
                step.target,
                step.minor_status,
                step.application_status,
                step.values,
            )
        )
        current = step.target
    return out


def transition_jobs(
    ctx: Context,
    conn: Connection,
    job_ids: Sequence[int],
    decide: Callable[[JobState], Sequence[Step] | None],
    source: str,
    *,
    strict: bool = True,
    known: Mapping[int, JobState] | None = None,
) -> dict[int, JobState]:
    """Apply ``decide(state)`` to each job; returns the states read before the change.

    ``decide`` returns the steps for a job (or None to leave it alone). With ``strict``, a
    missing job or an illegal transition raises (and the whole transaction rolls back);
    otherwise those jobs are skipped. ``known`` passes states the caller has just read
    (and locked) in this transaction, so they are not read again.
    """
    if known is not None and all(j in known for j in job_ids):
        states = {j: known[j] for j in job_ids}
    else:
        states = ctx.jobs.states(conn, job_ids)
    if strict:
        missing = [j for j in job_ids if j not in states]
        if missing:
            raise NotFound(
                f"no job {missing[0]}"
                if len(missing) == 1
                else f"no jobs {', '.join(map(str, missing[:10]))}"
            )
    changes: list[Transition] = []
    for state in states.values():
        steps = decide(state)
        if not steps:
            continue
        try:
            changes.extend(plan(state, steps))
        except InvalidTransition:
            if strict:
                raise
    if changes:
        # Multi-step chains must be applied in order, one step per statement.
        first_steps: dict[int, int] = {}
        for change in changes:
            first_steps[change.job_id] = first_steps.get(change.job_id, 0) + 1
        if max(first_steps.values()) == 1:
            ctx.jobs.apply(conn, changes, ctx.clock(), source)
        else:
            for change in changes:
                ctx.jobs.apply(conn, [change], ctx.clock(), source)
    return states
