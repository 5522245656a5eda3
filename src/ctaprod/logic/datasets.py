"""Dataset use cases: named metadata queries, dynamic (re-evaluated) or frozen (the file
list stored at freeze time). The transformation system reads them through
``dataset_query`` and ``iter_dataset_lfns``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from ctaprod.core.errors import Conflict, Forbidden, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.metadata import DatasetCreate, DatasetInfo, DatasetStatus, check_dataset_name
from ctaprod.core.metaquery import MetaQuery, parse, to_dict, to_text
from ctaprod.db.metadata import DIR_CHUNK
from ctaprod.logic.authz import require_user_token
from ctaprod.logic.context import Context
from ctaprod.logic.metadata import STREAM_PAGE, WRITERS, count_files, iter_files, lfn_of, plan_query


def _row(ctx: Context, conn: Connection, name: str) -> Any:
    row = ctx.datasets.get(conn, check_dataset_name(name))
    if row is None:
        raise NotFound(f"no dataset {name!r}", dataset=name)
    return row


def _info(row: Any, **counts: Any) -> DatasetInfo:
    query = parse(row.query)
    values = {
        "file_count": row.file_count, "total_size": row.total_size, **counts,
    }  # fmt: skip
    return DatasetInfo(
        name=row.name, owner=row.owner, owner_group=row.owner_group, query=to_text(query),
        query_dict=to_dict(query), status=DatasetStatus(row.status),
        description=row.description, created=row.created, frozen_at=row.frozen_at, **values,
    )  # fmt: skip


def _check_owner(ident: Identity, row: Any, what: str) -> None:
    require_user_token(ident, f"{what} a dataset")
    if ident.user != row.owner and not ident.has(*WRITERS):
        raise Forbidden(f"only {row.owner} or ProductionManagement may {what} dataset {row.name!r}")


def _freeze(ctx: Context, conn: Connection, row: Any) -> None:
    plan = plan_query(ctx, conn, row.query)
    where = ctx.meta.file_conditions(plan.file_conds)
    if plan.driver is not None and plan.dirs is None:
        ctx.datasets.add_files_from(conn, row.dataset_id, ctx.meta.ids_by_value(plan.driver, where))
    elif plan.driver is not None:
        ids = [d for d, _ in plan.dirs or ()]
        for start in range(0, len(ids), DIR_CHUNK):
            select_ids = ctx.meta.ids_by_value(plan.driver, where, ids[start : start + DIR_CHUNK])
            ctx.datasets.add_files_from(conn, row.dataset_id, select_ids)
    else:
        ids = [d for d, _ in plan.dirs or ()]
        for start in range(0, len(ids), DIR_CHUNK):
            select_ids = ctx.meta.ids_in_dirs(ids[start : start + DIR_CHUNK], where)
            ctx.datasets.add_files_from(conn, row.dataset_id, select_ids)
    if not ctx.datasets.freeze(conn, row.dataset_id, ctx.clock()):
        raise Conflict(f"dataset {row.name!r} is already frozen")


def create_dataset(ctx: Context, ident: Identity, spec: DatasetCreate) -> DatasetInfo:
    """Save a checked query under a new name (``Conflict`` if used); frozen at once if asked.
    Users only: pilot and job tokens cannot create datasets."""
    require_user_token(ident, "create a dataset")
    try:
        with ctx.db.write() as conn:
            query = plan_query(ctx, conn, spec.query).query
            if ctx.datasets.get(conn, spec.name) is not None:
                raise Conflict(f"dataset name {spec.name!r} is already used", dataset=spec.name)
            ctx.datasets.create(
                conn, name=spec.name, owner=ident.user, owner_group=ident.group,
                query=json.dumps(to_dict(query)), description=spec.description, now=ctx.clock(),
            )  # fmt: skip
            if spec.frozen:
                _freeze(ctx, conn, _row(ctx, conn, spec.name))
            row = _row(ctx, conn, spec.name)
    except IntegrityError:
        raise Conflict(f"dataset name {spec.name!r} is already used") from None
    return _info(row)


def list_datasets(ctx: Context) -> list[DatasetInfo]:
    """All datasets by name (counts only for frozen ones: dynamic ones count on show)."""
    with ctx.db.read() as conn:
        return [_info(row) for row in ctx.datasets.all(conn)]


def show_dataset(ctx: Context, name: str) -> DatasetInfo:
    """A dataset with its file count and total size (evaluated now if dynamic)."""
    with ctx.db.read() as conn:
        row = _row(ctx, conn, name)
    if row.status == DatasetStatus.FROZEN:
        return _info(row)
    counted = count_files(ctx, row.query)
    return _info(row, file_count=counted.count, total_size=counted.total_size)


def dataset_query(ctx: Context, name: str) -> MetaQuery:
    """The query of dataset ``name``."""
    with ctx.db.read() as conn:
        return parse(_row(ctx, conn, name).query)


def iter_dataset_files(ctx: Context, name: str) -> Iterator[list[tuple[int, str, int]]]:
    """Pages of (file_id, lfn, size): the stored list if frozen, else the query now."""
    with ctx.db.read() as conn:
        row = _row(ctx, conn, name)
        plan = None if row.status == DatasetStatus.FROZEN else plan_query(ctx, conn, row.query)
    if plan is not None:
        return iter_files(ctx, plan)
    return _frozen_pages(ctx, int(row.dataset_id))


def _frozen_pages(ctx: Context, dataset_id: int) -> Iterator[list[tuple[int, str, int]]]:
    after = None
    while True:
        with ctx.db.read() as conn:
            rows = ctx.datasets.files_page(conn, dataset_id, after, STREAM_PAGE)
        if rows:
            yield [(int(r.file_id), lfn_of(r.path, r.name), int(r.size)) for r in rows]
        if len(rows) < STREAM_PAGE:
            return
        after = int(rows[-1].file_id)


def iter_dataset_lfns(ctx: Context, name: str) -> Iterator[str]:
    """The LFNs of dataset ``name`` (checked now, read as consumed)."""
    pages = iter_dataset_files(ctx, name)
    return (lfn for page in pages for _, lfn, _ in page)


def freeze_dataset(ctx: Context, ident: Identity, name: str) -> DatasetInfo:
    """Store the files matching now as the dataset's fixed list (owner or ProductionManagement)."""
    with ctx.db.write() as conn:
        row = _row(ctx, conn, name)
        _check_owner(ident, row, "freeze")
        if row.status == DatasetStatus.FROZEN:
            raise Conflict(f"dataset {name!r} is already frozen (at {row.frozen_at})")
        _freeze(ctx, conn, row)
        return _info(_row(ctx, conn, name))


def delete_dataset(ctx: Context, ident: Identity, name: str) -> None:
    """Delete a dataset and its stored list (owner or ProductionManagement)."""
    with ctx.db.write() as conn:
        row = _row(ctx, conn, name)
        _check_owner(ident, row, "delete")
        ctx.datasets.delete(conn, int(row.dataset_id))
