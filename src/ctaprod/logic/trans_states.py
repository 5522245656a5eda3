"""The doors of transformations, their files and their tasks: every status change of these
goes through :func:`change_transformations`, :func:`change_trans_files` or
:func:`change_tasks` (the machines are in :mod:`ctaprod.core.trans_states`).

Each plugs into the generic door (:mod:`ctaprod.logic.door`): rows read under lock (``FOR
UPDATE`` on MariaDB/PostgreSQL; SQLite write transactions are serialized) unless the caller
passes the rows it has just read under the same lock, each step checked by the machine, an
UPDATE conditional on the state read, the hooks declared with the machine applied in the same
transaction, and a write that matched nothing reported as missed. The hooks:

- transformation ``log``: every change is written to the transformation log (who, what, when);
- file ``clear_task`` (an Unused file belongs to no task), ``return_log`` (why it came back
  from its task: the reasons a MaxReset file is reported with), ``reset_errors`` (an
  operator's reset gives a fresh error count);
- task ``submit_time``, ``end_time``, and ``release_files``: a task that ends moves its
  Assigned files on (Done -> Processed; Failed -> Unused with one more error, or MaxReset at
  the transformation's limit; Killed -> Unused, count unchanged), whoever ended it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping

from ctaprod.core.statemachine import Change, Transition, TransitionResult
from ctaprod.core.trans_states import (
    TASK_MACHINE,
    TRANSFORMATION_FILE_MACHINE,
    TRANSFORMATION_MACHINE,
    TaskStatus,
    TransFileStatus,
    TransformationStatus,
    file_outcome,
)
from ctaprod.db.statechange import ConditionalWriter
from ctaprod.db.tables import trans_files, trans_tasks, transformations
from ctaprod.logic.context import Context
from ctaprod.logic.door import Door, HookContext, change_states

TS, TF, TK = TransformationStatus, TransFileStatus, TaskStatus
Rows = Mapping[int, RowMapping]
MAX_REASON = 1024

_TRANS = ConditionalWriter(transformations, "trans_id")
_FILES = ConditionalWriter(trans_files, "id")
_TASKS = ConditionalWriter(trans_tasks, "task_id")


def transformation_door(ctx: Context) -> Door[TransformationStatus, RowMapping]:
    def log(
        conn: Connection,
        steps: Sequence[Transition[TransformationStatus]],
        h: HookContext[RowMapping],
    ) -> None:
        ctx.trans.add_log(
            conn,
            (
                (
                    t.ident,
                    h.source,
                    "status",
                    f"{t.old.value} -> {t.new.value}" + (f": {t.reason}" if t.reason else ""),
                )
                for t in steps
            ),
            h.now,
        )

    return Door(
        TRANSFORMATION_MACHINE,
        read=ctx.trans.read_locked,
        status=lambda row: TS(row["status"]),
        write=_TRANS.write_transitions,
        after={"log": log},
    )


def file_door(ctx: Context) -> Door[TransFileStatus, RowMapping]:
    return Door(
        TRANSFORMATION_FILE_MACHINE,
        read=ctx.trans.file_rows,
        status=lambda row: TF(row["status"]),
        write=_FILES.write_transitions,
        before={
            "clear_task": lambda t, now: {"task_id": None},
            "return_log": lambda t, now: {"last_error": t.reason[:MAX_REASON]},
            "reset_errors": lambda t, now: {"error_count": 0, "last_error": ""},
        },
    )


def task_door(ctx: Context) -> Door[TaskStatus, RowMapping]:
    def release_files(
        conn: Connection, steps: Sequence[Transition[TaskStatus]], h: HookContext[RowMapping]
    ) -> None:
        ended = {t.ident: t for t in steps}
        row_ids = ctx.trans.file_row_ids(conn, task_ids=list(ended), statuses=[TF.ASSIGNED.value])
        if not row_ids:
            return
        files = ctx.trans.file_rows(conn, row_ids)
        trans_ids = {int(h.states[t]["trans_id"]) for t in ended if t in h.states}
        limits = {
            tid: int(row["max_errors"])
            for tid, row in _plain_rows(ctx, conn, sorted(trans_ids)).items()
        }

        def decide(f: RowMapping) -> list[Change[TransFileStatus]] | None:
            t = ended.get(int(f["task_id"])) if f["task_id"] is not None else None
            if t is None:
                return None
            out = file_outcome(t.new, int(f["error_count"]), limits.get(int(f["trans_id"]), 1))
            reason = f"task {t.ident} {t.new.value}" + (f": {t.reason}" if t.reason else "")
            return [Change(out.status, reason, values={"error_count": out.error_count})]

        change_states(
            file_door(ctx),
            conn,
            row_ids,
            decide,
            source=h.source,
            now=h.now,
            strict=True,
            known=files,
        )

    return Door(
        TASK_MACHINE,
        read=ctx.trans.task_rows,
        status=lambda row: TK(row["status"]),
        write=_TASKS.write_transitions,
        before={
            "submit_time": lambda t, now: {"submitted": now},
            "end_time": _ended,
        },
        after={"release_files": release_files},
    )


def _ended(t: Transition[TaskStatus], now: datetime) -> Mapping[str, Any]:
    """A task that ends keeps when, and why it did not succeed (what MaxReset files show)."""
    values: dict[str, Any] = {"ended": now}
    if t.new in (TK.FAILED, TK.KILLED) and t.reason:
        values["error"] = t.reason[:MAX_REASON]
    return values


def _plain_rows(ctx: Context, conn: Connection, ids: Sequence[int]) -> dict[int, RowMapping]:
    rows: dict[int, RowMapping] = {}
    for i in ids:
        row = ctx.trans.get(conn, i)
        if row is not None:
            rows[i] = row
    return rows


def change_transformations(
    ctx: Context,
    conn: Connection,
    ids: Sequence[int],
    decide: Callable[[RowMapping], Sequence[Change[TransformationStatus]] | None],
    *,
    source: str,
    strict: bool = True,
    known: Rows | None = None,
) -> TransitionResult[TransformationStatus, RowMapping]:
    """Change transformations' status through their machine (module docstring)."""
    return change_states(
        transformation_door(ctx),
        conn,
        ids,
        decide,
        source=source,
        now=ctx.clock(),
        strict=strict,
        known=known,
    )


def change_trans_files(
    ctx: Context,
    conn: Connection,
    row_ids: Sequence[int],
    decide: Callable[[RowMapping], Sequence[Change[TransFileStatus]] | None],
    *,
    source: str,
    strict: bool = True,
    known: Rows | None = None,
) -> TransitionResult[TransFileStatus, RowMapping]:
    """Change transformation files (by their ``trans_files.id``) through their machine."""
    return change_states(
        file_door(ctx),
        conn,
        row_ids,
        decide,
        source=source,
        now=ctx.clock(),
        strict=strict,
        known=known,
    )


def change_tasks(
    ctx: Context,
    conn: Connection,
    task_ids: Sequence[int],
    decide: Callable[[RowMapping], Sequence[Change[TaskStatus]] | None],
    *,
    source: str,
    strict: bool = True,
    known: Rows | None = None,
) -> TransitionResult[TaskStatus, RowMapping]:
    """Change tasks through their machine; tasks that end release their files."""
    return change_states(
        task_door(ctx),
        conn,
        task_ids,
        decide,
        source=source,
        now=ctx.clock(),
        strict=strict,
        known=known,
    )
