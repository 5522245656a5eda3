"""Production use cases: check and dry-run, submit, read, drive (start, stop, flush, extend,
clean), the agent's pass (cascading input-complete, completion) and validation.

Authorization as for transformations: ProductionManagement (or Admin) submits and drives,
every authenticated user reads. One parser serves submit and dry-run
(:func:`ctaprod.core.productions.to_definition`, any registered format). A submission writes
the production, every step's transformation (in topological order, so that each child's
input query names its parents' ids), the steps and the log in ONE transaction: a failure at
any step leaves nothing. Driving a production drives its steps' transformations through
their own door, in the same transaction as the production's change.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from ctaprod.core.identity import Identity
from ctaprod.core.metaquery import MetaQuery, MetaSchema, parse, to_dict
from ctaprod.core.prod_states import DRIVEN, ProductionStatus, ValidationStatus
from ctaprod.core.prod_validation import ChecksumMode
from ctaprod.core.prod_views import (
    ProdLogEntry,
    ProductionDryRun,
    ProductionStatusView,
    ProductionView,
    StepDryRun,
    StepStatus,
    StepView,
    ValidationOutcome,
)
from ctaprod.core.productions import (
    FORMATS,
    STEP_FIELD,
    ConvertOptions,
    ProductionDefinition,
    Step,
    check_compatibility,
    step_definition,
    to_definition,
    topological_order,
)
from ctaprod.core.statemachine import Change
from ctaprod.core.trans_states import CLEANABLE, TransformationStatus
from ctaprod.core.trans_types import TYPES
from ctaprod.core.trans_views import DryRun
from ctaprod.core.transformations import TransformationSpec, check_definition
from ctaprod.db.productions import NewStep
from ctaprod.logic import prod_validation
from ctaprod.logic import transformations as T
from ctaprod.logic.catalog_access import check_dirs_writable, retrying
from ctaprod.logic.context import Context
from ctaprod.logic.homes import home_dir
from ctaprod.logic.prod_states import change_productions
from ctaprod.logic.prod_validation import Progress
from ctaprod.logic.trans_states import change_transformations
from ctaprod.logic.trans_trigger import CONSUMER, ensure_consumer, lock_for_attach

PS, TS, VS = ProductionStatus, TransformationStatus, ValidationStatus
AGENT = "ProductionAgent"
MAX_PAGE = 10_000


def _drive(ident: Identity) -> None:
    ident.require_user()
    ident.require(*T.DRIVERS)


def _source(ident: Identity) -> str:
    return f"{ident.user}/{ident.group}"


# --- checking ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """A checked production: its definition, steps in creation order, each step's dataset
    query and checked transformation spec (with stand-in ids: position + 1)."""

    definition: ProductionDefinition
    format: str
    order: list[Step]
    datasets: dict[str, MetaQuery | None]
    specs: dict[str, TransformationSpec]


def _step_error(step: Step, exc: InvalidInput) -> InvalidInput:
    key = exc.detail.get("key")
    detail = {**exc.detail, "step": step.id}
    if key:
        detail["key"] = f"transformation.{key}"
    return InvalidInput(f"step {step.id}: {exc.message}", **detail)


def check(
    ctx: Context,
    ident: Identity,
    raw: Mapping[str, Any],
    *,
    name: str | None = None,
    mc_tasks: int | None = None,
) -> Plan:
    """The checked plan of a production for this owner; ``InvalidInput`` naming the step and
    the key, ``Forbidden`` if the owner may not write under its base path."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("a production definition is a mapping of keys to values")
    fmt = FORMATS.detect(raw).name
    definition = to_definition(
        raw, ConvertOptions(name=name, mc_tasks=mc_tasks, datasets=_dataset_lookup(ctx))
    )
    order = topological_order(definition)
    with ctx.db.read() as conn:
        fields = ctx.meta.field_types(conn)
        if STEP_FIELD not in fields:
            raise Unavailable(
                f"the metadata field {STEP_FIELD!r} is not declared: the server declares it "
                "at start (server.extensions)"
            )
        datasets: dict[str, MetaQuery | None] = {}
        for step in order:
            datasets[step.id] = None
            if step.dataset is not None:
                row = ctx.datasets.get(conn, step.dataset)
                if row is None:
                    raise InvalidInput(
                        f"step {step.id}: dataset {step.dataset!r} does not exist",
                        step=step.id,
                        key="dataset",
                    )
                datasets[step.id] = parse(row.query)
        if definition.base_path is not None:
            try:
                check_dirs_writable(ctx, conn, ident, [definition.base_path])
            except Forbidden as exc:
                raise Forbidden(f"base_path: {exc.message}", key="base_path") from None
    bases = (
        [definition.base_path]
        if definition.base_path is not None
        else [*ctx.settings.transformations.output_bases, home_dir(ident.user)]
    )
    position = {s.id: i + 1 for i, s in enumerate(order)}
    specs: dict[str, TransformationSpec] = {}
    schema = MetaSchema(fields)
    for step in order:
        raw_t = step_definition(
            definition,
            step,
            trans_id=position[step.id],
            parent_ids=[position[p] for p in step.parents],
            dataset=datasets[step.id],
        )
        specs[step.id] = _check_step(ctx, step, raw_t, fields, bases)
        for parent_id in step.parents:
            parent = definition.step(parent_id)
            check_compatibility(
                step,
                parent,
                specs[parent_id].output_metadata,
                dataset=datasets[step.id],
                schema=schema,
            )
    return Plan(definition, fmt, order, datasets, specs)


def _dataset_lookup(ctx: Context) -> Callable[[str], Mapping[str, Any] | None]:
    def lookup(name: str) -> Mapping[str, Any] | None:
        with ctx.db.read() as conn:
            row = ctx.datasets.get(conn, name)
        return None if row is None else to_dict(parse(row.query))

    return lookup


def _check_step(
    ctx: Context,
    step: Step,
    raw: Mapping[str, Any],
    fields: Mapping[str, Any],
    bases: Sequence[str],
) -> TransformationSpec:
    try:
        spec = check_definition(raw, fields=fields, bases=bases, limits=ctx.limits)
    except InvalidInput as exc:
        raise _step_error(step, exc) from None
    if step.parents and not TYPES.get(spec.type).needs_input:
        raise InvalidInput(
            f"step {step.id}: a {spec.type} transformation takes no input files, so it "
            f"cannot have parents",
            step=step.id,
            key="parents",
        )
    return spec


def dry_run(
    ctx: Context,
    ident: Identity,
    raw: Mapping[str, Any],
    *,
    name: str | None = None,
    mc_tasks: int | None = None,
) -> ProductionDryRun:
    """What :func:`submit` would create today: per step its transformation definition, input
    query, the files it matches now and the tasks it would make. Nothing is written."""
    _drive(ident)
    plan = check(ctx, ident, raw, name=name, mc_tasks=mc_tasks)
    steps = [
        StepDryRun(
            step_id=step.id,
            parents=list(step.parents),
            trans_name=plan.specs[step.id].name,
            input_query=plan.specs[step.id].input_query,
            dry_run=_step_dry_run(ctx, plan.specs[step.id], has_parents=bool(step.parents)),
        )
        for step in plan.order
    ]
    return ProductionDryRun(
        name=plan.definition.name,
        format=plan.format,
        definition=plan.definition.model_dump(mode="json"),
        steps=steps,
    )


def _step_dry_run(ctx: Context, spec: TransformationSpec, *, has_parents: bool) -> DryRun:
    """A root step: what its query matches today. A child reads only what its parents will
    write (their transformations do not exist yet): nothing today, whatever the stand-in IDs
    of its query would match in the catalog."""
    if not has_parents:
        return T.dry_run_spec(ctx, spec)
    return DryRun(definition=spec.model_dump(mode="json"), matching_files=0, tasks=0)


# --- submission ----------------------------------------------------------------------------
def submit(
    ctx: Context,
    ident: Identity,
    raw: Mapping[str, Any],
    *,
    name: str | None = None,
    mc_tasks: int | None = None,
) -> ProductionView:
    """Create a production (New) and its steps' transformations (New), all or nothing."""
    _drive(ident)
    plan = check(ctx, ident, raw, name=name, mc_tasks=mc_tasks)
    definition = plan.definition
    ensure_consumer(ctx)
    source = _source(ident)

    def attempt() -> int:
        now = ctx.clock()
        with ctx.db.write() as conn:
            lock_for_attach(ctx, conn)
            fields = ctx.meta.field_types(conn)
            if ctx.prods.by_name(conn, definition.name) is not None:
                raise Conflict(
                    f"a production called {definition.name!r} exists already",
                    name=definition.name,
                )
            try:
                with conn.begin_nested():
                    prod_id = ctx.prods.insert(conn, _row(plan, ident, now))
            except IntegrityError:
                raise Conflict(
                    f"a production called {definition.name!r} exists already",
                    name=definition.name,
                ) from None
            ctx.prods.add_log(
                conn,
                [(prod_id, source, "submit", f"{len(plan.order)} steps ({plan.format} format)")],
                now,
            )
            ids: dict[str, int] = {}
            steps: list[NewStep] = []
            for pos, step in enumerate(plan.order):
                trans_id = _create_step(ctx, conn, plan, step, ids, fields, ident, now)
                ids[step.id] = trans_id
                steps.append(NewStep(step.id, step.name, pos, trans_id, step.parents))
            ctx.prods.add_steps(conn, prod_id, steps)
            ctx.prods.add_log(
                conn,
                [
                    (
                        prod_id,
                        source,
                        "create",
                        ", ".join(f"step {s.step_id}: transformation {s.trans_id}" for s in steps),
                    )
                ],
                now,
            )
            return prod_id

    return get(ctx, retrying(attempt))


def _row(plan: Plan, ident: Identity, now: Any) -> dict[str, Any]:
    d = plan.definition
    return {
        "name": d.name,
        "description": d.description,
        "owner": ident.user,
        "owner_group": ident.group,
        "status": PS.NEW.value,
        "definition": d.model_dump_json(),
        "created": now,
        "last_update": now,
        "validation_status": VS.NOT_VALIDATED.value,
    }


def _create_step(
    ctx: Context,
    conn: Connection,
    plan: Plan,
    step: Step,
    ids: Mapping[str, int],
    fields: Mapping[str, Any],
    ident: Identity,
    now: Any,
) -> int:
    """Create one step's transformation with its parents' real ids; its own id goes into its
    output metadata once known (the definition is rewritten with it)."""
    raw = step_definition(
        plan.definition,
        step,
        trans_id=0,
        parent_ids=[ids[p] for p in step.parents],
        dataset=plan.datasets[step.id],
    )
    bases = _bases_of(plan, ctx, ident)
    spec = _check_step(ctx, step, raw, fields, bases)  # now with the parents' real ids
    trans_id = T.insert_checked(ctx, conn, spec, ident, now)
    final = spec.model_copy(
        update={"output_metadata": {**spec.output_metadata, STEP_FIELD: trans_id}}
    )
    ctx.trans.set_fields(conn, trans_id, now, definition=final.model_dump_json())
    return trans_id


def _bases_of(plan: Plan, ctx: Context, ident: Identity) -> list[str]:
    base = plan.definition.base_path
    if base is not None:
        return [base]
    return [*ctx.settings.transformations.output_bases, home_dir(ident.user)]


# --- reading -------------------------------------------------------------------------------
def _is_id(ref: int | str) -> bool:
    return isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())


def _find(ctx: Context, conn: Connection, ref: int | str) -> RowMapping:
    row = ctx.prods.get(conn, int(ref)) if _is_id(ref) else ctx.prods.by_name(conn, str(ref))
    if row is None:
        raise NotFound(f"no production {ref!r}", production=str(ref))
    return row


def _steps(ctx: Context, conn: Connection, prod_id: int, counts: bool = True) -> list[StepView]:
    out = []
    for s in ctx.prods.steps(conn, [prod_id])[prod_id]:
        tid = int(s["trans_id"])
        trow = ctx.trans.get(conn, tid)
        out.append(
            StepView(
                step_id=s["step_id"],
                name=s["step_name"],
                parents=json.loads(s["parents"] or "[]"),
                trans_id=tid,
                trans_name=trow["name"] if trow else "?",
                trans_status=trow["status"] if trow else "?",
                input_complete=bool(trow["input_complete"]) if trow else False,
                files=ctx.trans.file_counts(conn, tid) if counts else {},
                tasks=ctx.trans.task_counts(conn, tid) if counts else {},
            )
        )
    return out


def _view(ctx: Context, conn: Connection, row: RowMapping, counts: bool = True) -> ProductionView:
    pid = int(row["prod_id"])
    summary = row["validation_summary"]
    return ProductionView(
        prod_id=pid,
        name=row["name"],
        description=row["description"],
        owner=row["owner"],
        owner_group=row["owner_group"],
        status=row["status"],
        created=row["created"],
        last_update=row["last_update"],
        validation_status=row["validation_status"],
        validation_summary=json.loads(summary) if summary else None,
        validated=row["validated"],
        validated_by=row["validated_by"],
        definition=json.loads(row["definition"] or "{}"),
        steps=_steps(ctx, conn, pid, counts),
    )


def get(ctx: Context, ref: int | str) -> ProductionView:
    with ctx.db.read() as conn:
        return _view(ctx, conn, _find(ctx, conn, ref))


def search(
    ctx: Context,
    *,
    statuses: Sequence[str] = (),
    owner: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[ProductionView]:
    for s in statuses:
        if s not in {p.value for p in PS}:
            known = ", ".join(p.value for p in PS)
            raise InvalidInput(f"unknown production status {s!r} (known: {known})")
    limit = max(1, min(limit, MAX_PAGE))
    with ctx.db.read() as conn:
        rows = ctx.prods.search(conn, statuses=statuses, owner=owner, after=after, limit=limit)
        return [_view(ctx, conn, r, counts=False) for r in rows]


def status(ctx: Context, ref: int | str) -> ProductionStatusView:
    """Per step: its transformation's status, files, tasks and jobs by status, failures by
    reason (the live view)."""
    with ctx.db.read() as conn:
        row = _find(ctx, conn, ref)
        steps = [
            StepStatus(
                **s.model_dump(),
                jobs=ctx.prods.job_counts(conn, s.trans_id),
                failures=ctx.prods.failure_counts(conn, s.trans_id),
            )
            for s in _steps(ctx, conn, int(row["prod_id"]))
        ]
    return ProductionStatusView(
        prod_id=int(row["prod_id"]),
        name=row["name"],
        status=row["status"],
        validation_status=row["validation_status"],
        steps=steps,
    )


def log(ctx: Context, ref: int | str, limit: int = 1000) -> list[ProdLogEntry]:
    with ctx.db.read() as conn:
        pid = int(_find(ctx, conn, ref)["prod_id"])
        rows = ctx.prods.log(conn, pid, max(1, min(limit, MAX_PAGE)))
    return [
        ProdLogEntry(time=r["time"], author=r["author"], action=r["action"], message=r["message"])
        for r in rows
    ]


# --- driving -------------------------------------------------------------------------------
def _step_rows(ctx: Context, conn: Connection, prod_id: int) -> list[RowMapping]:
    return ctx.prods.steps(conn, [prod_id])[prod_id]


def _drive_steps(
    ctx: Context,
    conn: Connection,
    trans_ids: Sequence[int],
    moves: Mapping[TransformationStatus, TransformationStatus],
    reason: str,
    source: str,
) -> None:
    """Move the steps' transformations that are in one of ``moves``' states (the others are
    left as they are: a Completed step stays Completed when its production is stopped)."""

    def decide(r: RowMapping) -> list[Change[TransformationStatus]] | None:
        target = moves.get(TS(r["status"]))
        return [Change(target, reason)] if target is not None else None

    if trans_ids:
        change_transformations(ctx, conn, list(trans_ids), decide, source=source, strict=False)


def _change(
    ctx: Context,
    ident: Identity,
    ref: int | str,
    target: ProductionStatus,
    reason: str,
    moves: Mapping[TransformationStatus, TransformationStatus],
    *,
    roots_only: bool = False,
) -> ProductionView:
    _drive(ident)
    source = _source(ident)
    with ctx.db.write() as conn:
        pid = int(_find(ctx, conn, ref)["prod_id"])
        change_productions(ctx, conn, [pid], lambda r: [Change(target, reason)], source=source)
        rows = _step_rows(ctx, conn, pid)
        if roots_only:
            rows = [r for r in rows if not json.loads(r["parents"] or "[]")]
        _drive_steps(ctx, conn, [int(r["trans_id"]) for r in rows], moves, reason, source)
    return get(ctx, pid)


def start(ctx: Context, ident: Identity, ref: int | str) -> ProductionView:
    """Active: every step's transformation is started (or resumed)."""
    return _change(
        ctx, ident, ref, PS.ACTIVE, "started", {TS.NEW: TS.ACTIVE, TS.STOPPED: TS.ACTIVE}
    )


def stop(ctx: Context, ident: Identity, ref: int | str) -> ProductionView:
    """Stopped: no step makes or submits new tasks (running ones still report)."""
    moves = {s: TS.STOPPED for s in (TS.ACTIVE, TS.FLUSH, TS.COMPLETING)}
    return _change(ctx, ident, ref, PS.STOPPED, "stopped", moves)


def flush(ctx: Context, ident: Identity, ref: int | str) -> ProductionView:
    """Flush: the roots' input is declared complete (they make their last, smaller groups
    and complete); the children follow as their parents complete (the production agent)."""
    _drive(ident)
    source = _source(ident)
    now = ctx.clock()
    with ctx.db.write() as conn:
        pid = int(_find(ctx, conn, ref)["prod_id"])
        change_productions(
            ctx, conn, [pid], lambda r: [Change(PS.FLUSH, "flush requested")], source=source
        )
        roots = [
            int(r["trans_id"])
            for r in _step_rows(ctx, conn, pid)
            if not json.loads(r["parents"] or "[]")
        ]
        for tid in roots:
            row = ctx.trans.get(conn, tid)
            if row is not None and row["input_query"] is not None:
                ctx.trans.set_fields(conn, tid, now, input_complete=True)
                ctx.trans.add_log(conn, [(tid, source, "input", "input complete (flush)")], now)
        _drive_steps(ctx, conn, roots, {TS.ACTIVE: TS.FLUSH}, "production flushed", source)
    return get(ctx, pid)


def extend(ctx: Context, ident: Identity, ref: int | str, tasks: int) -> ProductionView:
    """``tasks`` more tasks on every step without input (the MC steps); a Completed
    production goes back to Active."""
    _drive(ident)
    if tasks < 1:
        raise InvalidInput("extend: the number of tasks to add is at least 1", key="tasks")
    with ctx.db.read() as conn:
        row = _find(ctx, conn, ref)
        pid = int(row["prod_id"])
        if PS(row["status"]) not in (PS.NEW, PS.ACTIVE, PS.STOPPED, PS.COMPLETED):
            raise Conflict(
                f"production {row['name']} is {row['status']}: it cannot be extended",
                status=row["status"],
            )
        mc = []
        for s in _step_rows(ctx, conn, pid):
            trow = ctx.trans.get(conn, int(s["trans_id"]))
            if trow is not None and trow["input_query"] is None and trow["max_tasks"]:
                mc.append((int(s["trans_id"]), int(trow["max_tasks"])))
    if not mc:
        raise InvalidInput(f"production {row['name']} has no MC step to extend", key="tasks")
    for tid, max_tasks in mc:
        T.extend(ctx, ident, tid, max_tasks=max_tasks + tasks)
    source = _source(ident)
    with ctx.db.write() as conn:
        ctx.prods.add_log(conn, [(pid, source, "extend", f"{tasks} more tasks")], ctx.clock())
        if PS(row["status"]) is PS.COMPLETED:
            change_productions(
                ctx, conn, [pid], lambda r: [Change(PS.ACTIVE, "extended")], source=source
            )
        # The children's input is open again: more is coming from the MC steps (the agent
        # declares it complete again when their parents complete again).
        children = [
            int(s["trans_id"])
            for s in _step_rows(ctx, conn, pid)
            if json.loads(s["parents"] or "[]")
        ]
        for tid in children:
            ctx.trans.set_fields(conn, tid, ctx.clock(), input_complete=False)
        moves = {TS.COMPLETED: TS.ACTIVE, TS.COMPLETING: TS.ACTIVE}
        if PS(row["status"]) in (PS.NEW, PS.STOPPED):
            moves = {}  # they are started with the production
        _drive_steps(ctx, conn, children, moves, "extended", source)
    return get(ctx, pid)


def clean(ctx: Context, ident: Identity, ref: int | str) -> ProductionView:
    """Cleaning: every step's transformation is cleaned (jobs killed, outputs removed from
    catalog and storage, in bulk, resumable: the transformation agents do it); the production
    agent marks the production Cleaned once every step is."""
    moves = {s: TS.CLEANING for s in CLEANABLE}
    return _change(ctx, ident, ref, PS.CLEANING, "clean requested", moves)


# --- the agent's pass ----------------------------------------------------------------------
def advance(ctx: Context, marks: MutableMapping[int, int] | None = None) -> int:
    """One pass over the driven productions (Active, Flush) and those Cleaning: a step
    whose parents' transformations are all Completed gets its input declared complete (so
    it flushes and completes) once the catalog events up to the parents' completion have
    reached the transformations (no output of a parent is left unattached); a production
    whose steps are all Completed becomes Completed, one whose steps are all Cleaned becomes
    Cleaned. ``marks`` (kept by the caller between passes): per transformation, the last
    catalog event id when it was first seen Completed. Returns the changes made."""
    marks = {} if marks is None else marks
    changes = 0
    with ctx.db.read() as conn:
        ids = ctx.prods.ids_in(conn, [s.value for s in (*DRIVEN, PS.CLEANING)])
    for pid in ids:
        # A deadlock victim (MariaDB, PostgreSQL) rolled its pass back whole: again.
        changes += retrying(functools.partial(_advance_one, ctx, pid, marks))
    return changes


def _advance_one(ctx: Context, pid: int, marks: MutableMapping[int, int]) -> int:
    changes = 0
    with ctx.db.write() as conn:
        rows = ctx.prods.read_locked(conn, [pid])
        prod = rows.get(pid)
        if prod is None:
            return 0
        status = PS(prod["status"])
        steps = _step_rows(ctx, conn, pid)
        trans = {int(s["trans_id"]): ctx.trans.get(conn, int(s["trans_id"])) for s in steps}
        state = {tid: TS(r["status"]) for tid, r in trans.items() if r is not None}
        by_step = {s["step_id"]: int(s["trans_id"]) for s in steps}
        if status is PS.CLEANING:
            if state and all(s is TS.CLEANED for s in state.values()):
                change_productions(
                    ctx, conn, [pid], lambda r: [Change(PS.CLEANED, "every step cleaned")],
                    source=AGENT, known=rows,
                )  # fmt: skip
                return 1
            return 0
        last_event = ctx.prods.last_event_id(conn)
        for tid, st in state.items():
            if st is TS.COMPLETED:
                marks.setdefault(tid, last_event)
            else:  # reopened (extended): its next completion gets a new mark
                marks.pop(tid, None)
        now = ctx.clock()
        for s in steps:
            parents = json.loads(s["parents"] or "[]")
            tid = int(s["trans_id"])
            row = trans.get(tid)
            if not parents or row is None or row["input_complete"]:
                continue
            pids = [by_step[p] for p in parents]
            if not all(state.get(p) is TS.COMPLETED for p in pids):
                continue
            upto = max(marks[p] for p in pids)
            if ctx.prods.events_pending(conn, CONSUMER, upto):
                continue  # a parent's last outputs are not attached yet: next pass
            ctx.trans.set_fields(conn, tid, now, input_complete=True)
            ctx.trans.add_log(conn, [(tid, AGENT, "input", "input complete: parents done")], now)
            ctx.prods.add_log(
                conn, [(pid, AGENT, "cascade", f"step {s['step_id']}: input complete")], now
            )
            changes += 1
        if state and all(s is TS.COMPLETED for s in state.values()):
            change_productions(
                ctx, conn, [pid], lambda r: [Change(PS.COMPLETED, "every step completed")],
                source=AGENT, known=rows,
            )  # fmt: skip
            changes += 1
    return changes


# --- validation ----------------------------------------------------------------------------
def validate(
    ctx: Context,
    ident: Identity,
    ref: int | str,
    *,
    checksum: str = "sample",
    sample: int = 100,
    progress: Progress | None = None,
) -> ValidationOutcome:
    """Validate every step (``logic.prod_validation``) and store the outcome on the
    production (Valid or Invalid, the report's summary, when and by whom)."""
    _drive(ident)
    if checksum not in ("full", "sample", "none"):
        raise InvalidInput("checksum: full, sample or none", key="checksum")
    source = _source(ident)
    with ctx.db.write() as conn:
        row = _find(ctx, conn, ref)
        pid = int(row["prod_id"])
        steps = _step_rows(ctx, conn, pid)
        ctx.prods.set_fields(conn, pid, ctx.clock(), validation_status=VS.VALIDATING.value)
        ctx.prods.add_log(conn, [(pid, source, "validate", "validation started")], ctx.clock())
    try:
        # The orphans are looked for under the steps' own directories (their output
        # templates with the transformation filled in), not the whole base path, which other
        # productions of the campaign share.
        report = prod_validation.validate(
            ctx,
            [int(s["trans_id"]) for s in steps],
            checksum=cast(ChecksumMode, checksum),
            sample=sample,
            progress=progress,
        )
    except Exception:
        with ctx.db.write() as conn:
            ctx.prods.set_fields(conn, pid, ctx.clock(), validation_status=row["validation_status"])
            ctx.prods.add_log(conn, [(pid, source, "validate", "validation failed")], ctx.clock())
        raise
    full = report.model_dump(mode="json", exclude_none=True)
    valid = report.valid
    summary = {
        "valid": valid,
        "expected_outputs": report.expected_outputs,
        "produced_outputs": report.produced_outputs,
        "totals": report.totals,
        "checksum": report.checksum,
        "seconds": round(report.seconds, 3),
        "lines": report.summary(),
    }
    outcome = VS.VALID if valid else VS.INVALID
    now = ctx.clock()
    with ctx.db.write() as conn:
        ctx.prods.set_fields(
            conn,
            pid,
            now,
            validation_status=outcome.value,
            validation_summary=json.dumps(summary, default=str),
            validated=now,
            validated_by=source,
        )
        ctx.prods.add_log(conn, [(pid, source, "validate", outcome.value)], now)
    return ValidationOutcome(
        prod_id=pid, validation_status=outcome.value, summary=summary, report=full
    )
