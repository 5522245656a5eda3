"""Metadata use cases: fields, values on directories and files, queries returning LFNs.

A query is planned once (``plan_query``): each field is looked up at the levels where it
has values. Conditions on fields with directory values only select directories through
``dir_meta_eff`` (one index range each). A file condition on a field with file values only
drives the query when it is an equality (or IN) - one range of the index
``(field, value, dir_id, file_id)`` per matching directory - or, without directory
conditions, whatever its operator (one range of the value). The other conditions are tested
on each candidate file, a field with values on both levels as "the file's own value, else
its directory's" (nearest wins). Results come in keyset pages, so that a stream of any
length holds one page in memory: by directory id, then by name (no driving file condition)
or by file id (registration order; a driving file condition, answered from the index).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from ctaprod.core.events import EventKind, NewEvent
from ctaprod.core.identity import Identity
from ctaprod.core.lfn import ROOT, check_lfn, split
from ctaprod.core.metadata import (
    FieldDeclaration,
    FieldInfo,
    LfnPage,
    MetadataView,
    MetaValue,
    QueryCount,
)
from ctaprod.core.metaquery import (
    FieldType,
    MetaQuery,
    MetaSchema,
    Op,
    Scalar,
    check_field_name,
    coerce,
    validate,
)
from ctaprod.core.properties import Property
from ctaprod.db.metadata import DIR_CHUNK, TypedCondition
from ctaprod.db.tables import catalog_dirs, catalog_files
from ctaprod.logic.authz import refuse_pilot, require_user_token
from ctaprod.logic.catalog_access import check_attempt, may_write_in
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import PAYLOAD, require_job_scope

WRITERS = (Property.PRODUCTION_MANAGEMENT, Property.ADMIN)
STREAM_PAGE = 5000


def check_values(
    ctx: Context,
    conn: Connection,
    values: Mapping[str, object],
    *,
    types: Mapping[str, FieldType] | None = None,
) -> dict[str, Scalar]:
    """``values`` coerced to their declared types; ``InvalidInput`` naming the field for an
    undeclared field or a value of the wrong type. ``types``: the declared field types if the
    caller already read them (``ctx.meta.field_types``), so that checking many files reads
    them once."""
    if not values:
        return {}
    schema = MetaSchema(types if types is not None else ctx.meta.field_types(conn))
    out: dict[str, Scalar] = {}
    for name, value in values.items():
        ftype = schema.field_type(check_field_name(name))
        out[name] = coerce(name, ftype, value)
    return out


# --- fields ---------------------------------------------------------------------------------
def list_fields(ctx: Context) -> list[FieldInfo]:
    """The declared fields, by name."""
    with ctx.db.read() as conn:
        rows = ctx.meta.fields(conn)
    return sorted((FieldInfo.model_validate(dict(row)) for row in rows), key=lambda f: f.name)


def add_field(ctx: Context, ident: Identity, decl: FieldDeclaration) -> FieldInfo:
    """Declare a field (ProductionManagement or Admin). Declaring again a field that exists
    with that name and type changes nothing and returns it (an extension, e.g. the CTA one,
    may have declared it at start; scripts that declare their fields can run twice);
    ``Conflict`` if the name is taken with another type or letter case."""
    require_user_token(ident, "declare or remove metadata fields")
    ident.require(*WRITERS)
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            known = {r["name"].lower(): r for r in ctx.meta.fields(conn)}
            row = known.get(decl.name.lower())
            if row is not None:
                if row["name"] == decl.name and FieldType(row["type"]) is decl.type:
                    return FieldInfo.model_validate(dict(row))
                raise Conflict(
                    f"metadata field {row['name']!r} is already declared (type {row['type']})",
                    field=row["name"],
                )
            ctx.meta.declare_field(conn, decl.name, decl.type, now, decl.description)
    except IntegrityError:
        raise Conflict(f"metadata field {decl.name!r} is already declared") from None
    return FieldInfo(name=decl.name, type=decl.type, description=decl.description, created=now)


def remove_field(ctx: Context, ident: Identity, name: str) -> None:
    """Remove a field no directory or file uses (ProductionManagement or Admin)."""
    require_user_token(ident, "declare or remove metadata fields")
    ident.require(*WRITERS)
    with ctx.db.write() as conn:
        types = ctx.meta.field_types(conn)
        if name not in types:
            raise NotFound(f"metadata field {name!r} is not declared", field=name)
        if ctx.meta.field_in_use(conn, name, types[name]):
            raise Conflict(f"metadata field {name!r} is in use: unset its values first")
        ctx.meta.remove_field(conn, name)


# --- values -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    path: str
    dir_id: int
    file_id: int | None  # None: the directory itself
    owner: str
    owner_group: str


def _dir_id_of(conn: Connection, path: str) -> Any:
    digest = hashlib.sha1(path.encode()).hexdigest()
    d = catalog_dirs
    query = select(d.c.dir_id, d.c.owner, d.c.owner_group).where(d.c.path_hash == digest)
    return conn.execute(query).first()


def _target(conn: Connection, path: str) -> _Target:
    """The directory or file at ``path``, or ``NotFound``."""
    path = check_lfn(path)
    if (row := _dir_id_of(conn, path)) is not None:
        return _Target(path, int(row.dir_id), None, row.owner, row.owner_group)
    head, name = split(path)
    parent = _dir_id_of(conn, head)
    if parent is not None:
        f = catalog_files
        query = select(f.c.file_id, f.c.owner, f.c.owner_group).where(
            f.c.dir_id == parent.dir_id, f.c.name == name
        )
        if (row := conn.execute(query).first()) is not None:
            return _Target(path, int(parent.dir_id), int(row.file_id), parent.owner,
                           parent.owner_group)  # fmt: skip
    raise NotFound(f"no directory or file {path!r} in the catalog", path=path)


def _check_write(ident: Identity, target: _Target) -> None:
    """The catalog's rule: the directory's owner, its group, or ProductionManagement/Admin;
    never a pilot token."""
    refuse_pilot(ident, "change metadata")
    if may_write_in(ident, target.path, target.owner, target.owner_group):
        return
    raise Forbidden(
        f"{ident.user}/{ident.group} may not change the metadata of {target.path!r} "
        f"(directory owned by {target.owner}/{target.owner_group})", path=target.path,
    )  # fmt: skip


def set_metadata(
    ctx: Context, ident: Identity, path: str, values: Mapping[str, object]
) -> MetadataView:
    """Set typed values on a directory (its subtree inherits them) or a file; one event."""
    with ctx.db.write() as conn:
        require_job_scope(ctx, conn, ident, allowed=PAYLOAD, lock=True)
        target = _target(conn, path)
        _check_write(ident, target)
        check_attempt(ctx, conn, ident)
        checked = check_values(ctx, conn, values)
        if not checked:
            raise InvalidInput("no metadata value given")
        types = ctx.meta.field_types(conn)
        now = ctx.clock()
        if target.file_id is None:
            ctx.meta.set_dir_values(conn, target.dir_id, checked, types)
        else:
            ctx.meta.set_file_values(
                conn, [(target.file_id, checked)], types, dir_ids={target.file_id: target.dir_id}
            )
        ctx.events.add(conn, [_meta_event(target, checked)], now)
        return _view(ctx, conn, target, types)


def unset_metadata(ctx: Context, ident: Identity, path: str, fields: Sequence[str]) -> MetadataView:
    """Remove own values of a directory (its subtree inherits from above again) or a file."""
    with ctx.db.write() as conn:
        require_job_scope(ctx, conn, ident, allowed=PAYLOAD, lock=True)
        target = _target(conn, path)
        _check_write(ident, target)
        check_attempt(ctx, conn, ident)
        types = ctx.meta.field_types(conn)
        for name in fields:
            MetaSchema(types).field_type(check_field_name(name))
        now = ctx.clock()
        if target.file_id is None:
            ctx.meta.unset_dir_values(conn, target.dir_id, list(fields))
        else:
            ctx.meta.unset_file_values(conn, [(target.file_id, list(fields))])
        ctx.events.add(conn, [_meta_event(target, fields)], now)
        return _view(ctx, conn, target, types)


def _meta_event(target: _Target, fields: Iterable[str]) -> NewEvent:
    """The event of a metadata change, naming the fields so that a consumer can skip the
    queries that do not use them."""
    if target.file_id is None:
        return NewEvent(EventKind.DIR_META, dir_id=target.dir_id, fields=tuple(fields))
    return NewEvent(EventKind.FILE_META, target.file_id, target.dir_id, fields=tuple(fields))


def get_metadata(ctx: Context, path: str) -> MetadataView:
    """Own and effective values of a directory or a file, with where each comes from."""
    with ctx.db.read() as conn:
        target = _target(conn, path)
        return _view(ctx, conn, target, ctx.meta.field_types(conn))


def _view(
    ctx: Context, conn: Connection, target: _Target, types: Mapping[str, FieldType]
) -> MetadataView:
    dir_own, dir_eff = ctx.meta.dir_values(conn, target.dir_id, types)
    sources = {source for _, source in dir_eff.values()}
    paths = dict(
        conn.execute(
            select(catalog_dirs.c.dir_id, catalog_dirs.c.path).where(
                catalog_dirs.c.dir_id.in_(sources)
            )
        ).all()
    )
    effective = {
        name: MetaValue(field=name, value=value, type=types[name], origin=paths.get(src, "?"))
        for name, (value, src) in dir_eff.items()
    }
    own: dict[str, Scalar] = dir_own
    if target.file_id is not None:
        own = ctx.meta.file_values(conn, [target.file_id], types).get(target.file_id, {})
        for name, value in own.items():
            effective[name] = MetaValue(
                field=name, value=value, type=types[name], origin=target.path
            )
    kind = "directory" if target.file_id is None else "file"
    return MetadataView(
        path=target.path, kind=kind, own=own, effective=sorted(effective.values(), key=_by_field)
    )


def _by_field(value: MetaValue) -> str:
    return value.field


# --- queries --------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueryPlan:
    """A checked query and how to run it: over ``dirs`` (dir_id, path) sorted by id (None:
    every directory), driven by the file condition ``driver`` if any; ``file_conds`` (the
    driver excepted) are tested on each file."""

    query: MetaQuery
    file_conds: tuple[TypedCondition, ...] = ()
    dirs: tuple[tuple[int, str], ...] | None = ()
    driver: TypedCondition | None = None


def check_query(ctx: Context, query: MetaQuery | Mapping[str, Any] | str) -> MetaQuery:
    """Parse and check a query against the declared fields (``InvalidInput`` if wrong)."""
    with ctx.db.read() as conn:
        return validate(query, ctx.meta.field_types(conn))


def plan_query(
    ctx: Context,
    conn: Connection,
    query: MetaQuery | Mapping[str, Any] | str,
    path: str | None = None,
) -> QueryPlan:
    """Check ``query`` and decide how to run it (see the module docstring)."""
    types = ctx.meta.field_types(conn)
    checked = validate(query, types)
    scope = None
    if path is not None:
        path = check_lfn(path)
        if (row := _dir_id_of(conn, path)) is None:
            raise NotFound(f"no directory {path!r} in the catalog", path=path)
        scope = int(row.dir_id)
    levels = ctx.meta.levels(conn, {f: types[f] for f in checked.fields})
    dir_conds: list[TypedCondition] = []
    file_conds: list[TypedCondition] = []
    for cond in checked.conditions:
        on_dirs, on_files = levels[cond.field]
        if not (on_dirs or on_files):
            return QueryPlan(checked)  # no value anywhere: nothing can match
        typed = TypedCondition(cond, types[cond.field], on_dirs, on_files)
        (file_conds if on_files else dir_conds).append(typed)
    drivers = [tc for tc in file_conds if not tc.on_dirs]
    dirs: tuple[tuple[int, str], ...] | None = None
    if dir_conds or scope is not None or not drivers:
        dirs = tuple(ctx.meta.matching_dirs(conn, dir_conds, scope))
        drivers = [tc for tc in drivers if tc.cond.op in (Op.EQ, Op.IN)]
        if not drivers or not dirs:
            return QueryPlan(checked, tuple(file_conds), dirs)
    driver = min(drivers, key=lambda tc: tc.cond.op is not Op.EQ)
    rest = tuple(tc for tc in file_conds if tc is not driver)
    return QueryPlan(checked, rest, dirs, driver)


def lfn_of(path: str, name: str) -> str:
    return f"{path}/{name}" if path != ROOT else f"/{name}"


def _parse_cursor(cursor: str | None, plan: QueryPlan) -> Any:
    """The keyset position of a cursor: (dir_id, name) or, for a driven plan,
    (dir_id, file_id)."""
    if cursor is None:
        return None
    try:
        if plan.driver is not None and cursor.startswith("f"):
            dir_id, _, file_id = cursor[1:].partition("/")
            return int(dir_id), int(file_id)
        if plan.driver is None and cursor.startswith("d"):
            dir_id, _, name = cursor[1:].partition("/")
            return int(dir_id), name
    except ValueError:
        pass
    raise InvalidInput(f"invalid cursor {cursor!r}: pass the next_cursor of the previous page")


def _driven_page(
    ctx: Context, conn: Connection, plan: QueryPlan, after: Any, limit: int
) -> tuple[list[tuple[int, str, int]], Any]:
    """``_page`` of a plan with a driving file condition: by (dir_id, file_id)."""
    driver = plan.driver
    assert driver is not None
    where = ctx.meta.file_conditions(plan.file_conds)
    found: list[Any] = []

    def fetch(**kw: Any) -> None:
        found.extend(ctx.meta.files_by_value(conn, driver, where, limit - len(found), **kw))

    if plan.dirs is None:  # every directory: the cursor's, then the next ones
        if after is not None:
            fetch(dir_ids=[after[0]], after_file=after[1], with_path=True)
        if len(found) < limit:
            fetch(after_dir=None if after is None else after[0], with_path=True)
        out = [(int(r.file_id), lfn_of(r.path, r.name), int(r.size)) for r in found]
    else:
        ids = [d for d, _ in plan.dirs]
        paths = dict(plan.dirs)
        start = 0
        if after is not None:
            start = bisect.bisect_right(ids, after[0])
            if after[0] in paths:
                fetch(dir_ids=[after[0]], after_file=after[1])
        while start < len(ids) and len(found) < limit:
            fetch(dir_ids=ids[start : start + DIR_CHUNK])
            start += DIR_CHUNK
        out = [(int(r.file_id), lfn_of(paths[r.dir_id], r.name), int(r.size)) for r in found]
    last = found[-1] if len(found) == limit else None
    return out, (None if last is None else (int(last.dir_id), int(last.file_id)))


def _page(
    ctx: Context, conn: Connection, plan: QueryPlan, after: Any, limit: int
) -> tuple[list[tuple[int, str, int]], Any]:
    """Up to ``limit`` (file_id, lfn, size) after the keyset position ``after``; and the
    position of the next page (None at the end)."""
    if plan.driver is not None:
        return _driven_page(ctx, conn, plan, after, limit)
    where = ctx.meta.file_conditions(plan.file_conds)
    dirs = plan.dirs or ()
    ids = [d for d, _ in dirs]
    paths = dict(dirs)
    found: list[Any] = []
    start = 0
    if after is not None:  # the rest of the cursor's directory, then the next ones
        start = bisect.bisect_right(ids, after[0])
        if after[0] in paths:
            found += ctx.meta.files_in_dirs(conn, [after[0]], where, limit, after[1])
    while start < len(ids) and len(found) < limit:
        chunk = ids[start : start + DIR_CHUNK]
        found += ctx.meta.files_in_dirs(conn, chunk, where, limit - len(found))
        start += DIR_CHUNK
    out = [(int(r.file_id), lfn_of(paths[r.dir_id], r.name), int(r.size)) for r in found]
    last = found[-1] if len(found) == limit else None
    return out, (None if last is None else (int(last.dir_id), str(last.name)))


def find_page(
    ctx: Context,
    query: MetaQuery | Mapping[str, Any] | str,
    path: str | None = None,
    cursor: str | None = None,
    limit: int = 1000,
) -> LfnPage:
    """One page of matching LFNs; pass ``next_cursor`` back as ``cursor`` for the next."""
    with ctx.db.read() as conn:
        plan = plan_query(ctx, conn, query, path)
        rows, after = _page(ctx, conn, plan, _parse_cursor(cursor, plan), limit)
    next_cursor = None
    if after is not None:
        next_cursor = f"{'f' if plan.driver is not None else 'd'}{after[0]}/{after[1]}"
    return LfnPage(lfns=[lfn for _, lfn, _ in rows], next_cursor=next_cursor)


def iter_files(ctx: Context, plan: QueryPlan) -> Iterator[list[tuple[int, str, int]]]:
    """Pages of (file_id, lfn, size) of a planned query, each read in its own transaction."""
    if plan.dirs == () and plan.driver is None:
        return
    after = None
    while True:
        with ctx.db.read() as conn:
            rows, after = _page(ctx, conn, plan, after, STREAM_PAGE)
        if rows:
            yield rows
        if after is None:
            return


def pages_in(
    ctx: Context, conn: Connection, plan: QueryPlan, page: int = STREAM_PAGE
) -> Iterator[list[tuple[int, str, int]]]:
    """Pages of (file_id, lfn, size) of a planned query, all read in ``conn``'s transaction
    (a caller that writes what it reads, in the same transaction)."""
    if plan.dirs == () and plan.driver is None:
        return
    after = None
    while True:
        rows, after = _page(ctx, conn, plan, after, page)
        if rows:
            yield rows
        if after is None:
            return


def find_lfns(
    ctx: Context, query: MetaQuery | Mapping[str, Any] | str, path: str | None = None
) -> Iterator[list[str]]:
    """Pages of matching LFNs. The query is checked now (errors raise here, before the
    first page); the pages are read as they are consumed."""
    with ctx.db.read() as conn:
        plan = plan_query(ctx, conn, query, path)
    return ([lfn for _, lfn, _ in rows] for rows in iter_files(ctx, plan))


def count_files(
    ctx: Context, query: MetaQuery | Mapping[str, Any] | str, path: str | None = None
) -> QueryCount:
    """How many files match, and their total size."""
    with ctx.db.read() as conn:
        plan = plan_query(ctx, conn, query, path)
        where = ctx.meta.file_conditions(plan.file_conds)
        if plan.driver is not None:
            ids = None if plan.dirs is None else [d for d, _ in plan.dirs]
            count, size = ctx.meta.count_by_value(conn, plan.driver, where, ids)
        else:
            count, size = ctx.meta.count_in_dirs(conn, [d for d, _ in plan.dirs or ()], where)
    return QueryCount(count=count, total_size=size)
