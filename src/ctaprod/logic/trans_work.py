"""What the transformation agents do: make tasks of Unused files (or run numbers), submit
them as jobs, reschedule the failed jobs of live tasks, complete and clean transformations.

Exactly once with several agent replicas: a replica making tasks holds the transformation's
row (``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite's single writer) for its whole turn, and
files move Unused -> Assigned through their door, conditional on Unused; a replica submitting
takes Created tasks with ``SKIP LOCKED`` and creates their jobs, links them and marks them
Submitted in one transaction. A crash anywhere rolls the turn back whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, RowMapping

from ctaprod.core.errors import CtaprodError, InvalidInput, NotFound
from ctaprod.core.grouping import PLUGINS, GroupFile
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import JobDescription
from ctaprod.core.properties import Property, TokenKind
from ctaprod.core.requests import OperationSpec, RequestFile, RequestSpec, check_spec
from ctaprod.core.statemachine import Change
from ctaprod.core.trans_states import (
    CREATING_TASKS,
    FLUSHING,
    TASK_FINAL,
    TASK_LIVE,
    TaskStatus,
    TransFileStatus,
    TransformationStatus,
    mirror_steps,
    task_status_for_job,
)
from ctaprod.core.trans_types import TYPES, TaskKind
from ctaprod.core.transformations import TransformationSpec, render_task_job
from ctaprod.db.transformations import NewTask
from ctaprod.logic import input_data
from ctaprod.logic.context import Context
from ctaprod.logic.dataops import remove_file
from ctaprod.logic.job_status import transition_jobs
from ctaprod.logic.jobs import kill_step, reschedule_jobs, store_jobs
from ctaprod.logic.requests import store_request
from ctaprod.logic.trans_states import change_tasks, change_trans_files, change_transformations
from ctaprod.logic.transformations import spec_of

log = logging.getLogger(__name__)
TS, TF, TK, J = TransformationStatus, TransFileStatus, TaskStatus, JobStatus
FILES_PER_TURN = 10_000  # Unused files grouped per transformation and turn
TASKS_PER_TURN = 1_000  # tasks made (MCSimulation) or submitted per turn
CREATION = "TaskCreation"
SUBMISSION = "TaskSubmission"
RECOVERY = "TransformationRecovery"

Mine = Callable[[int], bool]


def _everyone(_: int) -> bool:
    return True


# --- task creation ---------------------------------------------------------------------------
def make_tasks(ctx: Context, *, mine: Mine = _everyone, files: int = FILES_PER_TURN) -> int:
    """One turn over the transformations that make tasks (Active, Flush, Completing): the
    tasks made."""
    with ctx.db.read() as conn:
        ids = ctx.trans.ids_in(conn, [s.value for s in CREATING_TASKS])
    made = 0
    for tid in ids:
        if mine(tid):
            made += make_tasks_of(ctx, tid, files=files)
    return made


def make_tasks_of(ctx: Context, trans_id: int, *, files: int = FILES_PER_TURN) -> int:
    """Group a transformation's Unused files into tasks (or make its next run numbers), in
    one transaction holding its row; 0 if another replica holds it."""
    with ctx.db.write() as conn:
        row = ctx.trans.lock_for_work(conn, trans_id)
        if row is None or TS(row["status"]) not in CREATING_TASKS:
            return 0
        spec = spec_of(row)
        status = TS(row["status"])
        flush = status in FLUSHING or bool(row["input_complete"])
        room = None if spec.max_tasks is None else max(0, spec.max_tasks - row["tasks_created"])
        if TYPES.get(spec.type).needs_input:
            made = _group_files(ctx, conn, trans_id, spec, flush=flush, room=room, limit=files)
        else:
            made = _make_runs(ctx, conn, trans_id, spec, min(room or 0, TASKS_PER_TURN))
        if status is TS.FLUSH:
            change_transformations(
                ctx, conn, [trans_id], lambda r: [Change(TS.ACTIVE, "flushed")], source=CREATION
            )
    if made:
        log.info("transformation %s: %d tasks made", trans_id, made)
    return made


def _make_runs(
    ctx: Context, conn: Connection, trans_id: int, spec: TransformationSpec, n: int
) -> int:
    if n <= 0:
        return 0
    first = ctx.trans.count_tasks_created(conn, trans_id, n)
    tasks = [NewTask(run_number=spec.run_number_of(first + 1 + i)) for i in range(n)]
    ctx.trans.create_tasks(conn, trans_id, tasks, TK.CREATED.value, ctx.clock())
    return n


def _group_files(
    ctx: Context,
    conn: Connection,
    trans_id: int,
    spec: TransformationSpec,
    *,
    flush: bool,
    room: int | None,
    limit: int,
) -> int:
    if room == 0:
        return 0
    unused = ctx.trans.unused(conn, trans_id, TF.UNUSED.value, limit)
    if not unused:
        return 0
    row_of = {file_id: row_id for row_id, file_id, _ in unused}
    lfns = ctx.catalog.lfns(conn, list(row_of))
    meta: Mapping[int, Mapping[str, Any]] = {}
    if spec.group_by:
        meta = ctx.meta.effective_file_values(
            conn, list(row_of), ctx.meta.field_types(conn), only=spec.group_by
        )
    candidates = [
        GroupFile(f, lfns[f], size, meta.get(f, {})) for _, f, size in unused if f in lfns
    ]
    plugin = PLUGINS.get(spec.plugin or TYPES.get(spec.type).default_plugin or "Standard")
    grouping = plugin(candidates, spec.group_size or 1, flush=flush, keys=spec.group_by)
    groups = grouping.groups
    cap = ctx.limits.max_input_data
    if TYPES.get(spec.type).tasks is TaskKind.JOB and cap and any(len(g) > cap for g in groups):
        # BySize bounds bytes, not files: a job takes at most max_input_data input files.
        groups = [g[i : i + cap] for g in groups for i in range(0, len(g), cap)]
    groups = groups if room is None else groups[:room]
    if not groups:
        return 0
    ctx.trans.count_tasks_created(conn, trans_id, len(groups))
    task_ids = ctx.trans.create_tasks(
        conn,
        trans_id,
        [NewTask([f.file_id for f in g]) for g in groups],
        TK.CREATED.value,
        ctx.clock(),
    )
    # One identical step for every file (one UPDATE ... IN per chunk), then each row pointed
    # at its task in one statement: per-file values would cost a parameter set per file.
    rows = sorted(row_of[f.file_id] for g in groups for f in g)
    # Their state was read in this turn (Unused); the UPDATE is conditional on it, so a file
    # removed meanwhile is reported missed, not overwritten: no second read of 10,000 rows.
    known = cast(Mapping[int, RowMapping], {r: {"id": r, "status": TF.UNUSED.value} for r in rows})
    change_trans_files(
        ctx, conn, rows, lambda r: [Change(TF.ASSIGNED)], source=CREATION, known=known
    )
    ctx.trans.link_task_files(conn, trans_id, rows, min(task_ids))
    return len(groups)


# --- submission ------------------------------------------------------------------------------
def owner_identity(row: RowMapping) -> Identity:
    """Who a transformation's jobs are submitted as: its owner, as a production manager."""
    return Identity(
        row["owner"],
        row["owner_group"],
        TokenKind.USER,
        frozenset({Property.PRODUCTION_MANAGEMENT.value}),
    )


def submit_tasks(ctx: Context, *, limit: int = TASKS_PER_TURN) -> int:
    """Submit Created tasks (of transformations that make tasks) as jobs: jobs, links and
    task statuses in one transaction; the tasks another replica holds are skipped. A task
    whose job cannot be made (its template does not render, an input left the catalog) fails
    with the reason, and its files go back with one more error."""
    with ctx.db.write() as conn:
        ids = ctx.trans.task_ids(conn, statuses=[TK.CREATED.value], limit=limit, skip_locked=True)
        if not ids:
            return 0
        rows = ctx.trans.task_rows(conn, ids)
        by_trans: dict[int, list[RowMapping]] = {}
        for r in rows.values():
            by_trans.setdefault(int(r["trans_id"]), []).append(r)
        done = 0
        for trans_id, tasks in sorted(by_trans.items()):
            trow = ctx.trans.get(conn, trans_id)
            if trow is None or TS(trow["status"]) not in CREATING_TASKS:
                continue  # stopped (or cleaning): its tasks wait
            done += _submit(ctx, conn, trow, tasks, rows)
    return done


def _submit(
    ctx: Context,
    conn: Connection,
    trow: RowMapping,
    tasks: Sequence[RowMapping],
    rows: dict[int, RowMapping],
) -> int:
    spec = spec_of(trow)
    trans_id = int(trow["trans_id"])
    if TYPES.get(spec.type).tasks is TaskKind.REQUEST:
        return _submit_requests(ctx, conn, trow, spec, tasks, rows)
    task_ids = [int(t["task_id"]) for t in tasks]
    inputs = ctx.trans.task_inputs(conn, task_ids)
    lfns = ctx.catalog.lfns(conn, [f for fs in inputs.values() for f in fs])
    inherited: Mapping[int, Mapping[str, Any]] = {}
    if spec.inherit_metadata:  # what the outputs take from their inputs, in one read
        inherited = ctx.meta.effective_file_values(
            conn, list(lfns), ctx.meta.field_types(conn), only=spec.inherit_metadata
        )
    good: list[tuple[int, JobDescription]] = []
    failed: dict[int, str] = {}
    for t in tasks:
        task_id = int(t["task_id"])
        missing = [f for f in inputs[task_id] if f not in lfns]
        if missing:
            failed[task_id] = f"input file {missing[0]} left the catalog"
            continue
        try:
            desc = render_task_job(
                spec,
                transformation_id=trans_id,
                task_id=task_id,
                input_lfns=[lfns[f] for f in inputs[task_id]],
                limits=ctx.limits,
                run_number=t["run_number"],
                input_metadata=(
                    [inherited.get(f, {}) for f in inputs[task_id]]
                    if spec.inherit_metadata
                    else None
                ),
            )
        except (InvalidInput, ValueError) as exc:
            failed[task_id] = f"job not made: {exc}"
            continue
        good.append((task_id, desc))
    owner = owner_identity(trow)
    if good:
        descs = [d for _, d in good]
        try:
            with conn.begin_nested():
                reqs = input_data.job_requirements(
                    ctx, [(d, owner.user, owner.group) for d in descs], conn=conn
                )
                job_ids = store_jobs(ctx, conn, owner, descs, reqs)
        except CtaprodError as exc:  # refused as a whole (e.g. a replica-less input file)
            failed.update({task_id: f"job not submitted: {exc}" for task_id, _ in good})
            good, job_ids = [], []
        links = {
            task_id: (job_id, None) for (task_id, _), job_id in zip(good, job_ids, strict=True)
        }
        ctx.trans.set_task_links(conn, links, ctx.clock())
        submitted = set(links)
        change_tasks(
            ctx,
            conn,
            sorted(submitted),
            lambda r: [Change(TK.SUBMITTED, f"job {links[r['task_id']][0]}"), Change(TK.WAITING)],
            source=SUBMISSION,
            known={i: rows[i] for i in submitted},
        )
    if failed:
        change_tasks(
            ctx,
            conn,
            sorted(failed),
            lambda r: [
                Change(TK.FAILED, failed[r["task_id"]], {"error": failed[r["task_id"]][:1024]})
            ],
            source=SUBMISSION,
            known={i: rows[i] for i in failed},
        )
    return len(good)


def _submit_requests(
    ctx: Context,
    conn: Connection,
    trow: RowMapping,
    spec: TransformationSpec,
    tasks: Sequence[RowMapping],
    rows: dict[int, RowMapping],
) -> int:
    """Replication and Removal: one request per task, its operation on the task's files."""
    ttype = TYPES.get(spec.type)
    assert ttype.operation is not None
    trans_id = int(trow["trans_id"])
    task_ids = [int(t["task_id"]) for t in tasks]
    inputs = ctx.trans.task_inputs(conn, task_ids)
    lfns = ctx.catalog.lfns(conn, [f for fs in inputs.values() for f in fs])
    arguments = _operation_arguments(ttype.operation, spec.parameters)
    owner = owner_identity(trow)
    links: dict[int, tuple[int | None, int | None]] = {}
    failed: dict[int, str] = {}
    for task_id in task_ids:
        files = [lfns[f] for f in inputs[task_id] if f in lfns]
        if not files:
            failed[task_id] = "its input files left the catalog"
            continue
        request = RequestSpec(
            name=f"trans{trans_id}_task{task_id}",
            operations=[
                OperationSpec(
                    type=ttype.operation,
                    arguments=arguments,
                    files=[RequestFile(lfn=lfn) for lfn in files],
                )
            ],
        )
        try:
            checked = check_spec(request)
        except CtaprodError as exc:
            failed[task_id] = f"request not made: {exc}"
            continue
        links[task_id] = (None, store_request(ctx, conn, owner, checked))
    if links:
        ctx.trans.set_task_links(conn, links, ctx.clock())
        change_tasks(
            ctx,
            conn,
            sorted(links),
            lambda r: [
                Change(TK.SUBMITTED, f"request {links[r['task_id']][1]}"),
                Change(TK.WAITING),
            ],
            source=SUBMISSION,
            known={i: rows[i] for i in links},
        )
    if failed:
        change_tasks(
            ctx,
            conn,
            sorted(failed),
            lambda r: [
                Change(TK.FAILED, failed[r["task_id"]], {"error": failed[r["task_id"]][:1024]})
            ],
            source=SUBMISSION,
            known={i: rows[i] for i in failed},
        )
    return len(links)


def _operation_arguments(operation: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's arguments from the transformation's parameters."""
    if operation == "ReplicateAndRegister":
        targets = parameters.get("target_ses")
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        out: dict[str, Any] = {"target_ses": targets}
        if parameters.get("source_se"):
            out["source_se"] = parameters["source_se"]
        return out
    return {}


# --- recovery and completion ----------------------------------------------------------------
@dataclass
class Recovery:
    """What one recovery pass did."""

    rescheduled: int = 0
    done: int = 0  # every output was registered before the job ended: the task is Done
    failed: int = 0
    killed: int = 0
    outputs_removed: int = 0
    waiting: int = 0  # partial outputs that could not be removed yet (storage down)
    repaired: int = 0  # live tasks whose status lagged their job's (a hook rolled back)

    @property
    def total(self) -> int:
        return self.rescheduled + self.done + self.failed + self.killed + self.repaired


def recover_tasks(
    ctx: Context,
    *,
    trans_id: int | None = None,
    limit: int = TASKS_PER_TURN,
    reschedule: bool = True,
) -> Recovery:
    """Live job tasks whose job ended without success (the task hook leaves them live):

    - a Failed job within the reschedule limit is rescheduled (its task goes back to Waiting);
    - otherwise (Failed past the limit, Killed, Deleted, or gone) its outputs are reconciled:
      every output the job was to write is registered by it -> the task is Done (the job
      failed after its work was safe); some are -> those are removed from catalog and storage
      (a partial result must not stay beside the one a retry makes), then the task fails
      (Killed for a killed job) and its files go back; none -> the task ends at once.
    A removal that fails (storage down) leaves the task live for the next pass."""
    out = Recovery()
    live = [s.value for s in TASK_LIVE - {TK.CREATED}]
    with ctx.db.read() as conn:
        ids = ctx.trans.task_ids(conn, trans_id=trans_id, statuses=live, limit=None)
        rows = ctx.trans.tasks_by_id(conn, ids)
        jobs = {int(r["job_id"]): r for r in rows.values() if r["job_id"] is not None}
        states = ctx.jobs.states(conn, list(jobs))
    # A task that lags its job (its job's change committed, the mirror did not: cannot happen
    # through the door, but a repair costs nothing here) catches up, jobs locked first.
    lagging = [
        j
        for j, s in states.items()
        if s.status not in _UNSUCCESSFUL
        and mirror_steps(TK(jobs[j]["status"]), task_status_for_job(s.status))
    ]
    if lagging:
        out.repaired = _mirror_again(ctx, lagging)
    limit_r = ctx.settings.jobs.max_reschedules
    retry = [
        j
        for j, s in states.items()
        if reschedule and s.status is J.FAILED and s.reschedule_count < limit_r
    ]
    if retry:
        with ctx.db.write() as conn:
            got = reschedule_jobs(
                ctx, None, retry[:limit], "Rescheduled: its transformation task retries",
                strict=False, conn=conn,
            )  # fmt: skip
        out.rescheduled = sum(1 for s in got.values() if s is not J.FAILED)
    over = [
        r
        for j, r in jobs.items()
        if (j not in states or states[j].status in _UNSUCCESSFUL) and j not in retry
    ][:limit]
    if not over:
        return out
    with ctx.db.read() as conn:
        texts = ctx.jobs.descriptions(conn, [int(r["job_id"]) for r in over])
        written = ctx.catalog.files_of_jobs(conn, [int(r["job_id"]) for r in over])
        lfns = ctx.catalog.lfns(conn, [f for fs in written.values() for f in fs])
        owners = {int(r["trans_id"]): ctx.trans.get(conn, int(r["trans_id"])) for r in over}
    for task in over:
        job_id = int(task["job_id"])
        state = states.get(job_id)
        expected: set[str] = set()
        if job_id in texts:
            desc = JobDescription.model_validate_json(texts[job_id])
            expected = set(desc.output_lfns("").values())
        registered = {lfns[f] for f in written.get(job_id, []) if f in lfns}
        reason = (
            f"job {job_id} {state.status.value}" if state is not None else f"job {job_id} is gone"
        )
        if expected and expected <= registered:
            target, why = TK.DONE, f"{reason} after registering all its outputs"
        else:
            owner_row = owners.get(int(task["trans_id"]))
            if registered and owner_row is not None:
                left = _remove_outputs(ctx, owner_identity(owner_row), sorted(registered))
                out.outputs_removed += len(registered) - len(left)
                if left:
                    out.waiting += 1
                    continue
                reason += f"; {len(registered)} partial outputs removed"
            killed = state is None or state.status is not J.FAILED
            target, why = (TK.KILLED if killed else TK.FAILED), reason
        with ctx.db.write() as conn:
            now_states = ctx.jobs.states(conn, [job_id])
            current = now_states.get(job_id)
            if current is not None and current.status not in _UNSUCCESSFUL:
                continue  # rescheduled meanwhile (by hand): the task follows the job again
            ended = _end_task(ctx, conn, int(task["task_id"]), target, why)
        if ended:
            out.done += target is TK.DONE
            out.failed += target is TK.FAILED
            out.killed += target is TK.KILLED
    return out


def _mirror_again(ctx: Context, job_ids: Sequence[int]) -> int:
    with ctx.db.write() as conn:
        states = ctx.jobs.states(conn, job_ids)
        task_ids = ctx.trans.task_ids(
            conn, job_ids=list(states), statuses=[s.value for s in TASK_LIVE]
        )
        if not task_ids:
            return 0

        def decide(r: RowMapping) -> list[Change[TaskStatus]] | None:
            state = states.get(int(r["job_id"]))
            if state is None or state.status in _UNSUCCESSFUL:
                return None
            return mirror_steps(TK(r["status"]), task_status_for_job(state.status))

        result = change_tasks(ctx, conn, task_ids, decide, source=RECOVERY, strict=False)
    return len({t.ident for t in result.applied})


def _end_task(ctx: Context, conn: Connection, task_id: int, target: TaskStatus, why: str) -> bool:
    """End a live task (its files follow through the task door); False if it was over."""

    def decide(r: RowMapping) -> list[Change[TaskStatus]] | None:
        if TK(r["status"]) in TASK_FINAL:
            return None
        return [Change(target, why, {"error": why[:1024]})]

    result = change_tasks(ctx, conn, [task_id], decide, source=RECOVERY, strict=False)
    return bool(result.applied)


def _remove_outputs(ctx: Context, owner: Identity, lfns: Sequence[str]) -> list[str]:
    """Remove outputs from catalog and storage; the LFNs that could not be removed."""
    left = []
    for lfn in lfns:
        try:
            remove_file(ctx, owner, lfn)
        except NotFound:
            continue  # gone already
        except CtaprodError as exc:
            log.warning("cannot remove the partial output %s yet: %s", lfn, exc)
            left.append(lfn)
    return left


_UNSUCCESSFUL = frozenset({J.FAILED, J.KILLED, J.DELETED})


def _change(
    ctx: Context, conn: Connection, trans_id: int, steps: list[Change[TransformationStatus]]
) -> None:
    change_transformations(ctx, conn, [trans_id], lambda r: steps, source=RECOVERY)


def complete(ctx: Context, *, mine: Mine = _everyone) -> int:
    """Completion: a transformation whose tasks are all made (MCSimulation: max_tasks; with
    input: the input is complete and no file is Unused) goes Completing, and Completed once
    none of its tasks is live. Returns the transformations moved."""
    moved = 0
    with ctx.db.read() as conn:
        ids = ctx.trans.ids_in(conn, [TS.ACTIVE.value, TS.COMPLETING.value])
    for tid in ids:
        if not mine(tid):
            continue
        with ctx.db.write() as conn:
            row = ctx.trans.lock_for_work(conn, tid)
            if row is None:
                continue
            spec = spec_of(row)
            status = TS(row["status"])
            files = ctx.trans.file_counts(conn, tid)
            tasks = ctx.trans.task_counts(conn, tid)
            live = sum(n for s, n in tasks.items() if TK(s) in TASK_LIVE)
            if TYPES.get(spec.type).needs_input:
                all_made = bool(row["input_complete"]) and not files.get(TF.UNUSED.value)
            else:
                all_made = spec.max_tasks is not None and row["tasks_created"] >= spec.max_tasks
            steps: list[Change[TransformationStatus]] = []
            if status is TS.ACTIVE and all_made:
                steps.append(Change(TS.COMPLETING, "every task made"))
            if all_made and not live and not files.get(TF.ASSIGNED.value):
                steps.append(Change(TS.COMPLETED, "every task ended"))
            if steps:
                _change(ctx, conn, tid, steps)
                moved += 1
    return moved


def clean(ctx: Context, *, mine: Mine = _everyone) -> int:
    """Transformations in Cleaning: tasks not yet submitted are killed, jobs still running are
    killed (with the kill command), the tasks of jobs that ended are reconciled (partial
    outputs removed, no reschedule), and once none is live the transformation is Cleaned.
    Returns the tasks ended this turn."""
    ended = 0
    with ctx.db.read() as conn:
        ids = ctx.trans.ids_in(conn, [TS.CLEANING.value])
    for tid in ids:
        if not mine(tid):
            continue
        with ctx.db.write() as conn:
            row = ctx.trans.lock_for_work(conn, tid)
            if row is None or TS(row["status"]) is not TS.CLEANING:
                continue
            live = ctx.trans.task_ids(
                conn, trans_id=tid, statuses=[s.value for s in TASK_LIVE], limit=TASKS_PER_TURN
            )
            rows = ctx.trans.task_rows(conn, live) if live else {}
            unsubmitted = [t for t, r in rows.items() if r["job_id"] is None]
            if unsubmitted:
                change_tasks(
                    ctx, conn, unsubmitted, lambda r: [Change(TK.KILLED, "transformation cleaned")],
                    source=RECOVERY, known={t: rows[t] for t in unsubmitted},
                )  # fmt: skip
            job_ids = [int(r["job_id"]) for r in rows.values() if r["job_id"] is not None]
            states = ctx.jobs.states(conn, job_ids)
            killable = [j for j, s in states.items() if s.status not in _JOB_ENDED]
            if killable:
                transition_jobs(
                    ctx, conn, killable,
                    lambda s: [kill_step(s, "Killed: its transformation is cleaned")],
                    RECOVERY, strict=False, known={j: states[j] for j in killable},
                )  # fmt: skip
            ended += len(unsubmitted)
        ended += recover_tasks(ctx, trans_id=tid, reschedule=False).total
        with ctx.db.read() as conn:
            left = ctx.trans.task_ids(
                conn, trans_id=tid, statuses=[s.value for s in TASK_LIVE], limit=1
            )
        if left or not _remove_all_outputs(ctx, tid):
            continue  # next turn: tasks still ending, or outputs not all removed yet
        with ctx.db.write() as conn:
            row = ctx.trans.lock_for_work(conn, tid)
            if row is not None and TS(row["status"]) is TS.CLEANING:
                _change(ctx, conn, tid, [Change(TS.CLEANED, "tasks ended, outputs removed")])
    return ended


_JOB_ENDED = frozenset({J.DONE, J.FAILED, J.KILLED, J.DELETED})


def _remove_all_outputs(ctx: Context, trans_id: int, limit: int = 1000) -> bool:
    """Remove (catalog and storage) up to ``limit`` files its jobs registered; True when none
    is left. A removal that fails (storage down) is tried again next turn."""
    with ctx.db.read() as conn:
        job_ids = ctx.trans.job_ids_of(conn, trans_id)
        files = [f for fs in ctx.catalog.files_of_jobs(conn, job_ids).values() for f in fs]
        lfns = ctx.catalog.lfns(conn, files[:limit])
        owner = ctx.trans.get(conn, trans_id)
    if not files:
        return True
    if owner is None:
        return False
    left = _remove_outputs(ctx, owner_identity(owner), sorted(lfns.values()))
    if lfns:
        ctx_log = f"{len(lfns) - len(left)} outputs removed"
        with ctx.db.write() as conn:
            ctx.trans.add_log(conn, [(trans_id, RECOVERY, "clean", ctx_log)], ctx.clock())
    return not left and len(files) <= limit
