"""Reading jobs: search with filters and keyset pagination, summaries, details, history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.sql import ColumnElement

from ctaprod.core.errors import InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.jobs import HistoryEntry, JobDetail, JobSummary
from ctaprod.core.schemas import MAX_PAGE, JobFilter, JobPage
from ctaprod.db.jobs import JobState
from ctaprod.db.tables import jobs
from ctaprod.logic.context import Context
from ctaprod.logic.jobs import check_access, jdl_of, load_description


def _owner(ident: Identity, flt: JobFilter) -> str | None:
    """The owner whose jobs are listed: anyone's for job admins, else the caller's own."""
    owner = flt.owner
    if not ident.is_job_admin:
        if owner is not None and owner != ident.user:
            raise NotFound(f"you can only list your own jobs, not {owner!r}'s")
        owner = ident.user
    return owner


def _filters(ident: Identity, flt: JobFilter, *, key: bool = True) -> list[ColumnElement[bool]]:
    """The filters of ``flt`` as column conditions.

    With ``key=False`` the owner and a single status (the search key, which
    ``JobDB.search`` writes itself) are left out.
    """
    out: list[ColumnElement[bool]] = []
    owner = _owner(ident, flt)
    if owner is not None and key:
        out.append(jobs.c.owner == owner)
    if len(flt.status) > 1:
        out.append(jobs.c.status.in_([s.value for s in flt.status]))
    elif flt.status and key:
        out.append(jobs.c.status == flt.status[0].value)
    for name in ("owner_group", "site", "job_group", "job_type", "job_name"):
        value = getattr(flt, name)
        if value is not None:
            out.append(jobs.c[name] == value)
    if flt.submitted_after is not None:
        out.append(jobs.c.submission_time >= flt.submitted_after)
    if flt.submitted_before is not None:
        out.append(jobs.c.submission_time < flt.submitted_before)
    if flt.updated_after is not None:
        out.append(jobs.c.last_update >= flt.updated_after)
    if flt.job_ids:
        out.append(jobs.c.job_id.in_(flt.job_ids))
    return out


# The columns a search reads: JobSummary's fields, in its order.
SUMMARY_FIELDS = tuple(JobSummary.model_fields)
SUMMARY_COLUMNS = tuple(jobs.c[name] for name in SUMMARY_FIELDS)


def summary_of(row: Mapping[Any, Any]) -> JobSummary:
    """A JobSummary from a row of the jobs table (columns it does not list are ignored)."""
    return JobSummary.model_validate(dict(row))


def _summaries(rows: Sequence[Sequence[Any]]) -> list[JobSummary]:
    """JobSummaries from rows of ``SUMMARY_COLUMNS``."""
    validate = JobSummary.model_validate
    return [validate(dict(zip(SUMMARY_FIELDS, row, strict=True))) for row in rows]


def search_jobs(
    ctx: Context,
    ident: Identity,
    flt: JobFilter,
    *,
    limit: int = 100,
    cursor: int | None = None,
    descending: bool = True,
) -> JobPage:
    """One page of jobs, newest first by default; ``cursor`` continues a previous page."""
    ident.require_user()
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"page size must be within 1..{MAX_PAGE}")
    owner = _owner(ident, flt)
    filters = _filters(ident, flt, key=False)
    with ctx.db.read() as conn:
        rows = ctx.jobs.search(
            conn,
            filters,
            owner=owner,
            status=flt.status[0].value if len(flt.status) == 1 else None,
            after=None if descending else cursor,
            before=cursor if descending else None,
            limit=limit + 1,
            descending=descending,
            columns=SUMMARY_COLUMNS,
        )
    more = len(rows) > limit
    page = _summaries(rows[:limit])
    return JobPage(jobs=page, next_cursor=page[-1].job_id if more and page else None)


def count_jobs(ctx: Context, ident: Identity, flt: JobFilter) -> int:
    ident.require_user()
    with ctx.db.read() as conn:
        return ctx.jobs.count(conn, _filters(ident, flt))


def job_summary(
    ctx: Context, ident: Identity, flt: JobFilter, by: str = "site"
) -> dict[str, dict[str, int]]:
    """Counts by status, broken down by ``by`` (site, owner, owner_group, job_group, job_type)."""
    ident.require_user()
    allowed = {"site", "owner", "owner_group", "job_group", "job_type", "status"}
    if by not in allowed:
        raise InvalidInput(f"cannot summarise by {by!r}; choose one of {sorted(allowed)}")
    with ctx.db.read() as conn:
        rows = ctx.jobs.summary(conn, _filters(ident, flt), by)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for key, status, n in rows:
        out[key][status] = out[key].get(status, 0) + n
    return dict(out)


def _visible_state(ctx: Context, ident: Identity, job_id: int) -> JobState:
    with ctx.db.read() as conn:
        state = ctx.jobs.states(conn, [job_id]).get(job_id)
    if state is None:
        raise NotFound(f"no job {job_id}")
    check_access(ident, state)
    return state


def job_detail(ctx: Context, ident: Identity, job_id: int) -> JobDetail:
    _visible_state(ctx, ident, job_id)
    with ctx.db.read() as conn:
        row = ctx.jobs.get(conn, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        desc = load_description(ctx, conn, job_id)
        params = ctx.jobs.parameters(conn, job_id)
    base = summary_of(row).model_dump()
    return JobDetail(**base, description=desc, jdl=jdl_of(desc), parameters=params)


def job_history(ctx: Context, ident: Identity, job_id: int) -> list[HistoryEntry]:
    _visible_state(ctx, ident, job_id)
    with ctx.db.read() as conn:
        rows = ctx.jobs.history(conn, job_id)
    return [HistoryEntry.model_validate(dict(r)) for r in rows]
