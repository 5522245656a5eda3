"""User-facing job routes: submit, search, inspect, control."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import HistoryEntry, JobDetail
from ctaprod.core.schemas import (
    Id,
    JobFilter,
    JobIds,
    JobPage,
    RescheduleResponse,
    SubmitRequest,
    SubmitResponse,
)
from ctaprod.logic import jobs as L
from ctaprod.logic import queries as Q
from ctaprod.logic import sandboxes as S

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.post("", status_code=201)
def submit(body: SubmitRequest, svc: ServicesDep, ident: IdentityDep) -> SubmitResponse:
    """Submit jobs from a JDL/YAML/JSON text or parsed documents (parametric jobs expand)."""
    descs = L.parse_descriptions(svc.ctx, body.text, body.format, body.documents)
    result = L.submit_jobs(svc.ctx, ident, descs)
    svc.matcher.invalidate()
    return SubmitResponse(job_ids=result.job_ids)


@router.get("")
def search(
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    owner: str | None = None,
    owner_group: str | None = None,
    site: str | None = None,
    job_group: str | None = None,
    job_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Id | None = None,
    ascending: bool = False,
) -> JobPage:
    """One page of jobs; pass ``next_cursor`` back as ``cursor`` for the next page."""
    flt = JobFilter(
        status=status or [],
        owner=owner,
        owner_group=owner_group,
        site=site,
        job_group=job_group,
        job_type=job_type,
    )
    return Q.search_jobs(svc.ctx, ident, flt, limit=limit, cursor=cursor, descending=not ascending)


@router.post("/search")
def search_by_filter(
    flt: JobFilter,
    svc: ServicesDep,
    ident: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Id | None = None,
    ascending: bool = False,
) -> JobPage:
    """Search with the full filter (time ranges, job IDs)."""
    return Q.search_jobs(svc.ctx, ident, flt, limit=limit, cursor=cursor, descending=not ascending)


@router.post("/count")
def count(flt: JobFilter, svc: ServicesDep, ident: IdentityDep) -> int:
    return Q.count_jobs(svc.ctx, ident, flt)


@router.post("/summary")
def summary(
    flt: JobFilter, svc: ServicesDep, ident: IdentityDep, by: str = "site"
) -> dict[str, dict[str, int]]:
    """Job counts by status, broken down by site (or owner, group, job group, type)."""
    return Q.job_summary(svc.ctx, ident, flt, by)


@router.post("/kill", status_code=204)
def kill(body: JobIds, svc: ServicesDep, ident: IdentityDep) -> None:
    L.kill_jobs(svc.ctx, ident, body.job_ids)


@router.post("/reschedule")
def reschedule(body: JobIds, svc: ServicesDep, ident: IdentityDep) -> RescheduleResponse:
    out = L.reschedule_jobs(svc.ctx, ident, body.job_ids)
    svc.matcher.invalidate()
    return RescheduleResponse(statuses=out)


@router.post("/delete", status_code=204)
def delete_many(body: JobIds, svc: ServicesDep, ident: IdentityDep) -> None:
    L.delete_jobs(svc.ctx, ident, body.job_ids)


@router.get("/{job_id}")
def get_job(job_id: Id, svc: ServicesDep, ident: IdentityDep) -> JobDetail:
    return Q.job_detail(svc.ctx, ident, job_id)


@router.get("/{job_id}/history")
def history(job_id: Id, svc: ServicesDep, ident: IdentityDep) -> list[HistoryEntry]:
    return Q.job_history(svc.ctx, ident, job_id)


@router.delete("/{job_id}", status_code=204)
def delete_one(job_id: Id, svc: ServicesDep, ident: IdentityDep) -> None:
    L.delete_jobs(svc.ctx, ident, [job_id])


@router.get(
    "/{job_id}/output",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
def output(job_id: Id, svc: ServicesDep, ident: IdentityDep) -> StreamingResponse:
    """The job's output sandbox (tar.gz of stdout, stderr and declared files)."""
    sha, stream = S.output_of(svc.ctx, ident, job_id)
    return StreamingResponse(
        _chunks(stream),
        media_type="application/gzip",
        headers={
            "X-Sandbox-Sha256": sha,
            "Content-Disposition": f'attachment; filename="job{job_id}_output.tar.gz"',
        },
    )


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := stream.read(1 << 16):
            yield chunk
    finally:
        stream.close()
