"""Transformation use cases: create (with a dry run), read, drive (start, stop, flush,
complete, extend, clean) and re-scan.

Authorization: the ProductionManagement property (or Admin) creates and drives
transformations; every authenticated user reads them. A definition is checked whole
(:func:`ctaprod.core.transformations.check_definition`) before anything is written; creating
one writes the row, its log entry and its existing input files (found by its query, attached
as Unused in bulk) in one transaction: a failure leaves nothing behind. Files registered
later are attached by the event consumer (:mod:`ctaprod.logic.trans_trigger`); the re-scan
here is for repair, never the mechanism.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from ctaprod.core.errors import Conflict, InvalidInput, NotFound
from ctaprod.core.grouping import PLUGINS, GroupFile
from ctaprod.core.identity import Identity
from ctaprod.core.metaquery import validate
from ctaprod.core.properties import Property
from ctaprod.core.statemachine import Change
from ctaprod.core.trans_states import ATTACHING, TaskStatus, TransFileStatus, TransformationStatus
from ctaprod.core.trans_types import TYPES
from ctaprod.core.trans_views import (
    AttachResult,
    DryRun,
    TaskView,
    TransFileView,
    TransformationView,
    TransLogEntry,
)
from ctaprod.core.transformations import TransformationSpec, check_definition
from ctaprod.logic import metadata as M
from ctaprod.logic.catalog_access import retrying
from ctaprod.logic.context import Context
from ctaprod.logic.homes import home_dir
from ctaprod.logic.trans_states import change_transformations
from ctaprod.logic.trans_trigger import ensure_consumer, lock_for_attach

TS, TF = TransformationStatus, TransFileStatus
DRIVERS = (Property.PRODUCTION_MANAGEMENT, Property.ADMIN)
MAX_PAGE = 10_000
DRY_RUN_FILES = 100_000  # a dry run groups at most this many of the matching files


def _drive(ident: Identity) -> None:
    ident.require_user()
    ident.require(*DRIVERS)


def check(ctx: Context, ident: Identity, raw: Mapping[str, Any]) -> TransformationSpec:
    """The checked spec of a definition for this owner (``InvalidInput`` naming the key)."""
    with ctx.db.read() as conn:
        fields = ctx.meta.field_types(conn)
    bases = [*ctx.settings.transformations.output_bases, home_dir(ident.user)]
    return check_definition(raw, fields=fields, bases=bases, limits=ctx.limits)


def _row_values(spec: TransformationSpec, ident: Identity, now: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "type": spec.type,
        "status": TS.NEW.value,
        "owner": ident.user,
        "owner_group": ident.group,
        "description": spec.description,
        "input_query": spec.input_query,
        "plugin": spec.plugin,
        "group_size": spec.group_size,
        "max_tasks": spec.max_tasks,
        "max_errors": spec.max_errors,
        "input_limit": spec.input_limit,
        "definition": spec.model_dump_json(),
        "created": now,
        "last_update": now,
    }


def create(
    ctx: Context, ident: Identity, raw: Mapping[str, Any], *, start: bool = False
) -> TransformationView:
    """Create a transformation (New; Active with ``start``) and attach its existing input."""
    _drive(ident)
    spec = check(ctx, ident, raw)
    now = ctx.clock()
    ensure_consumer(ctx)

    def attempt() -> int:
        with ctx.db.write() as conn:
            lock_for_attach(ctx, conn)  # ordered with the event consumer's batches
            return insert_checked(ctx, conn, spec, ident, now, start=start)

    # A deadlock with concurrent registrations (MariaDB, PostgreSQL) rolls it all back: again.
    trans_id = retrying(attempt)
    return get(ctx, trans_id)


def insert_checked(
    ctx: Context,
    conn: Connection,
    spec: TransformationSpec,
    ident: Identity,
    now: Any,
    *,
    start: bool = False,
) -> int:
    """Write a checked transformation, its log and its existing input (Unused) in the
    caller's transaction, which holds the attach lock (``lock_for_attach``); its id."""
    source = f"{ident.user}/{ident.group}"
    if ctx.trans.by_name(conn, spec.name) is not None:
        raise Conflict(f"a transformation called {spec.name!r} exists already", name=spec.name)
    try:
        with conn.begin_nested():
            trans_id = ctx.trans.insert(conn, _row_values(spec, ident, now))
    except IntegrityError:  # created concurrently under the same name
        raise Conflict(
            f"a transformation called {spec.name!r} exists already", name=spec.name
        ) from None
    ctx.trans.add_log(conn, [(trans_id, source, "create", f"{spec.type} {spec.name}")], now)
    if spec.input_query is not None:
        _, added = _attach_query(ctx, conn, trans_id, spec.input_query)
        ctx.trans.add_log(
            conn,
            [(trans_id, source, "attach", f"{added} existing files match the input query")],
            now,
        )
    if start:
        change_transformations(
            ctx, conn, [trans_id], lambda r: [Change(TS.ACTIVE, "created and started")],
            source=source,
        )  # fmt: skip
    return trans_id


def _attach_query(ctx: Context, conn: Connection, trans_id: int, query: str) -> tuple[int, int]:
    """Attach every file the query matches now (Unused); (matching, newly attached)."""
    plan = M.plan_query(ctx, conn, query)
    matched = added = 0
    now = ctx.clock()
    for rows in M.pages_in(ctx, conn, plan):
        matched += len(rows)
        added += ctx.trans.attach(conn, trans_id, [r[0] for r in rows], TF.UNUSED.value, now)
    return matched, added


def dry_run(ctx: Context, ident: Identity, raw: Mapping[str, Any]) -> DryRun:
    """What ``create`` would do with this definition today: the files its query matches,
    the tasks the plugin would make of them. Nothing is written."""
    _drive(ident)
    return dry_run_spec(ctx, check(ctx, ident, raw))


def dry_run_spec(ctx: Context, spec: TransformationSpec) -> DryRun:
    """The dry run of a checked spec (see :func:`dry_run`)."""
    sample = ctx.settings.transformations.dry_run_files
    if spec.input_query is None:
        tasks = spec.max_tasks or 0
        return DryRun(definition=spec.model_dump(mode="json"), matching_files=0, tasks=tasks)
    files: list[GroupFile] = []
    matching = M.count_files(ctx, spec.input_query).count
    with ctx.db.read() as conn:
        plan = M.plan_query(ctx, conn, spec.input_query)
        for rows in M.pages_in(ctx, conn, plan):
            files += [GroupFile(f, lfn, size) for f, lfn, size in rows]
            if len(files) >= DRY_RUN_FILES:  # the tasks of the first ones tell enough
                files = files[:DRY_RUN_FILES]
                break
        if spec.group_by:
            values = ctx.meta.effective_file_values(
                conn, [f.file_id for f in files], ctx.meta.field_types(conn)
            )
            files = [GroupFile(f.file_id, f.lfn, f.size, values.get(f.file_id, {})) for f in files]
    grouping = _group(spec, files, flush=False)
    return DryRun(
        definition=spec.model_dump(mode="json"),
        matching_files=matching,
        grouped_files=len(files),
        sample_lfns=sorted(f.lfn for f in files)[:sample],
        tasks=len(grouping.groups),
        leftover_files=len(grouping.leftovers),
        task_sizes=[len(g) for g in grouping.groups[:sample]],
    )


def _group(spec: TransformationSpec, files: Sequence[GroupFile], *, flush: bool) -> Any:
    plugin = PLUGINS.get(spec.plugin or TYPES.get(spec.type).default_plugin or "Standard")
    return plugin(files, spec.group_size or 1, flush=flush, keys=spec.group_by)


# --- reading --------------------------------------------------------------------------------
def _find(ctx: Context, conn: Connection, ref: int | str) -> RowMapping:
    row = ctx.trans.get(conn, int(ref)) if _is_id(ref) else ctx.trans.by_name(conn, str(ref))
    if row is None:
        raise NotFound(f"no transformation {ref!r}", transformation=str(ref))
    return row


def _is_id(ref: int | str) -> bool:
    return isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())


def resolve(ctx: Context, ref: int | str) -> int:
    """The id of a transformation given by id or name."""
    with ctx.db.read() as conn:
        return int(_find(ctx, conn, ref)["trans_id"])


def _view(
    ctx: Context, conn: Connection, row: RowMapping, counts: bool = True
) -> TransformationView:
    tid = int(row["trans_id"])
    return TransformationView(
        trans_id=tid,
        name=row["name"],
        type=row["type"],
        status=row["status"],
        owner=row["owner"],
        owner_group=row["owner_group"],
        description=row["description"],
        input_query=row["input_query"],
        plugin=row["plugin"],
        group_size=row["group_size"],
        max_tasks=row["max_tasks"],
        max_errors=row["max_errors"],
        tasks_created=row["tasks_created"],
        input_complete=bool(row["input_complete"]),
        created=row["created"],
        last_update=row["last_update"],
        definition=json.loads(row["definition"] or "{}"),
        files=ctx.trans.file_counts(conn, tid) if counts else {},
        tasks=ctx.trans.task_counts(conn, tid) if counts else {},
    )


def get(ctx: Context, ref: int | str) -> TransformationView:
    with ctx.db.read() as conn:
        return _view(ctx, conn, _find(ctx, conn, ref))


def spec_of(row: RowMapping) -> TransformationSpec:
    """The stored spec of a transformation row."""
    return TransformationSpec.model_validate_json(row["definition"])


def search(
    ctx: Context,
    *,
    statuses: Sequence[str] = (),
    types: Sequence[str] = (),
    owner: str | None = None,
    after: int = 0,
    limit: int = 100,
    counts: bool = True,
) -> list[TransformationView]:
    _check_statuses(TS, "transformation", statuses)
    limit = max(1, min(limit, MAX_PAGE))
    with ctx.db.read() as conn:
        rows = ctx.trans.search(
            conn, statuses=statuses, types=types, owner=owner, after=after, limit=limit
        )
        return [_view(ctx, conn, r, counts) for r in rows]


def _check_statuses(kind: type[StrEnum], what: str, names: Sequence[str]) -> None:
    """InvalidInput naming the first of ``names`` that is not a ``kind``."""
    for name in names:
        try:
            kind(name)
        except ValueError:
            known = ", ".join(k.value for k in kind)
            raise InvalidInput(f"unknown {what} status {name!r} (known: {known})") from None


def files(
    ctx: Context,
    ref: int | str,
    *,
    statuses: Sequence[str] = (),
    after: int = 0,
    limit: int = 1000,
) -> list[TransFileView]:
    _check_statuses(TF, "file", statuses)
    limit = max(1, min(limit, MAX_PAGE))
    with ctx.db.read() as conn:
        tid = int(_find(ctx, conn, ref)["trans_id"])
        rows = ctx.trans.files(conn, tid, statuses=statuses, after=after, limit=limit)
        lfns = ctx.catalog.lfns(conn, [int(r["file_id"]) for r in rows])
        stuck = [int(r["file_id"]) for r in rows if r["status"] == TF.MAX_RESET.value]
        failures = ctx.trans.failures_of_files(conn, tid, stuck) if stuck else {}
    return [
        TransFileView(
            id=r["id"],
            file_id=r["file_id"],
            lfn=lfns.get(int(r["file_id"])),
            status=r["status"],
            task_id=r["task_id"],
            error_count=r["error_count"],
            last_error=r["last_error"],
            failures=failures.get(int(r["file_id"]), []),
            last_update=r["last_update"],
        )
        for r in rows
    ]


def tasks(
    ctx: Context,
    ref: int | str,
    *,
    statuses: Sequence[str] = (),
    after: int = 0,
    limit: int = 1000,
    with_inputs: bool = False,
) -> list[TaskView]:
    _check_statuses(TaskStatus, "task", statuses)
    limit = max(1, min(limit, MAX_PAGE))
    with ctx.db.read() as conn:
        tid = int(_find(ctx, conn, ref)["trans_id"])
        rows = ctx.trans.tasks(conn, tid, statuses=statuses, after=after, limit=limit)
        inputs: dict[int, list[str]] = {}
        if with_inputs:
            ids = ctx.trans.task_inputs(conn, [int(r["task_id"]) for r in rows])
            lfns = ctx.catalog.lfns(conn, [f for fs in ids.values() for f in fs])
            inputs = {t: [lfns.get(f, f"<file {f}>") for f in fs] for t, fs in ids.items()}
    return [
        TaskView(**{k: r[k] for k in TaskView.model_fields if k != "inputs"},
                 inputs=inputs.get(int(r["task_id"]), []))
        for r in rows
    ]  # fmt: skip


def log(ctx: Context, ref: int | str, limit: int = 1000) -> list[TransLogEntry]:
    with ctx.db.read() as conn:
        tid = int(_find(ctx, conn, ref)["trans_id"])
        rows = ctx.trans.log(conn, tid, max(1, min(limit, MAX_PAGE)))
    return [
        TransLogEntry(time=r["time"], author=r["author"], action=r["action"], message=r["message"])
        for r in rows
    ]


# --- driving --------------------------------------------------------------------------------
def set_status(
    ctx: Context, ident: Identity, ref: int | str, target: TransformationStatus, reason: str = ""
) -> TransformationView:
    """One step of the transformation's machine (409 naming the current state if illegal)."""
    _drive(ident)
    source = f"{ident.user}/{ident.group}"
    with ctx.db.write() as conn:
        tid = int(_find(ctx, conn, ref)["trans_id"])
        change_transformations(
            ctx, conn, [tid], lambda r: [Change(target, reason)], source=source, strict=True
        )
    return get(ctx, tid)


def start(ctx: Context, ident: Identity, ref: int | str) -> TransformationView:
    return set_status(ctx, ident, ref, TS.ACTIVE, "started")


def stop(ctx: Context, ident: Identity, ref: int | str) -> TransformationView:
    return set_status(ctx, ident, ref, TS.STOPPED, "stopped")


def flush(ctx: Context, ident: Identity, ref: int | str) -> TransformationView:
    """Make the last, smaller groups now (the task agent does it, then goes back to Active)."""
    return set_status(ctx, ident, ref, TS.FLUSH, "flush requested")


def clean(ctx: Context, ident: Identity, ref: int | str) -> TransformationView:
    """Cleaning: its live tasks are killed, the files its jobs registered are removed from
    catalog and storage, and it ends Cleaned (the recovery agent does it)."""
    return set_status(ctx, ident, ref, TS.CLEANING, "clean requested")


def input_complete(ctx: Context, ident: Identity, ref: int | str) -> TransformationView:
    """No more input will come (its parents finished): it flushes, then completes."""
    _drive(ident)
    source = f"{ident.user}/{ident.group}"
    with ctx.db.write() as conn:
        row = _find(ctx, conn, ref)
        tid = int(row["trans_id"])
        ctx.trans.set_fields(conn, tid, ctx.clock(), input_complete=True)
        ctx.trans.add_log(conn, [(tid, source, "input", "input complete")], ctx.clock())
    return get(ctx, tid)


def extend(
    ctx: Context,
    ident: Identity,
    ref: int | str,
    *,
    query: str | None = None,
    max_tasks: int | None = None,
) -> TransformationView:
    """A new input query (its existing files attached now) or more tasks (MCSimulation)."""
    _drive(ident)
    if query is None and max_tasks is None:
        raise InvalidInput("extend needs a new input query or a new maximum number of tasks")
    source = f"{ident.user}/{ident.group}"
    now = ctx.clock()
    ensure_consumer(ctx)
    with ctx.db.write() as conn:
        lock_for_attach(ctx, conn)
        row = _find(ctx, conn, ref)
        tid = int(row["trans_id"])
        status = TS(row["status"])
        if status not in ATTACHING and status is not TS.COMPLETED:
            raise Conflict(
                f"transformation {row['name']} is {status.value}: it cannot be extended",
                status=status.value,
            )
        spec = spec_of(row)
        update: dict[str, Any] = {}
        if query is not None:
            if spec.input_query is None:
                raise InvalidInput(f"query: {spec.type} transformations have no input query")
            checked = validate(query, ctx.meta.field_types(conn))
            update["input_query"] = str(checked)
        if max_tasks is not None:
            if spec.max_tasks is None or max_tasks < int(row["tasks_created"]):
                raise InvalidInput(
                    f"max_tasks: must be at least the {row['tasks_created']} tasks made already"
                    if spec.max_tasks is not None
                    else f"max_tasks: {spec.type} transformations are not extended by tasks"
                )
            update["max_tasks"] = max_tasks
        new_spec = spec.model_copy(update=update)
        ctx.trans.set_fields(conn, tid, now, definition=new_spec.model_dump_json(), **update)
        ctx.trans.add_log(conn, [(tid, source, "extend", json.dumps(update))], now)
        if "input_query" in update:
            _, added = _attach_query(ctx, conn, tid, update["input_query"])
            ctx.trans.add_log(conn, [(tid, source, "attach", f"{added} files attached")], now)
        if status is TS.COMPLETED:
            change_transformations(
                ctx, conn, [tid], lambda r: [Change(TS.ACTIVE, "extended")], source=source
            )
    return get(ctx, tid)


def rescan(ctx: Context, ident: Identity, ref: int | str) -> AttachResult:
    """Run the input query over the whole catalog and attach what is missing: a repair tool
    (events attach files as they come; this finds what a bug or an outage let slip)."""
    _drive(ident)
    source = f"{ident.user}/{ident.group}"
    with ctx.db.write() as conn:
        row = _find(ctx, conn, ref)
        tid = int(row["trans_id"])
        if row["input_query"] is None:
            raise InvalidInput(f"transformation {row['name']} has no input query to re-scan")
        if TS(row["status"]) not in ATTACHING:
            raise Conflict(
                f"transformation {row['name']} is {row['status']}: it takes no more files",
                status=row["status"],
            )
        matched, added = _attach_query(ctx, conn, tid, row["input_query"])
        ctx.trans.add_log(
            conn, [(tid, source, "rescan", f"{matched} files match, {added} attached")], ctx.clock()
        )
    return AttachResult(trans_id=tid, matching_files=matched, attached=added)
