"""Requests routes: create, list, show, retry and cancel failover requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.requests import RequestId, RequestInfo, RequestPage, RequestSpec, RequestStatus
from ctaprod.core.schemas import MAX_PAGE, Id
from ctaprod.logic import requests as L

router = APIRouter(prefix="/api/requests", tags=["requests"])


@router.post("", status_code=201)
def create(body: RequestSpec, svc: ServicesDep, ident: IdentityDep) -> RequestId:
    """Create a request; its operations run in order (job tokens: for their own job)."""
    return RequestId(request_id=L.create_request(svc.ctx, ident, body))


@router.get("")
def search(
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[RequestStatus] | None, Query()] = None,
    owner: str | None = None,
    job_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Id | None = None,
) -> RequestPage:
    """One page of requests, newest first; pass ``next_cursor`` back as ``cursor``."""
    return L.list_requests(
        svc.ctx,
        ident,
        statuses=status or [],
        owner=owner,
        job_id=job_id,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{request_id}")
def get_request(request_id: Id, svc: ServicesDep, ident: IdentityDep) -> RequestInfo:
    """A request with its operations and their files."""
    return L.get_request(svc.ctx, ident, request_id)


@router.post("/{request_id}/retry")
def retry(request_id: Id, svc: ServicesDep, ident: IdentityDep) -> RequestInfo:
    """Retry a stuck request now (Failed, Assigned to a dead executor, or backing off);
    409 with the reason for a Done, Canceled or live-held request."""
    return L.retry_request(svc.ctx, ident, request_id)


@router.post("/{request_id}/cancel")
def cancel(request_id: Id, svc: ServicesDep, ident: IdentityDep) -> RequestInfo:
    """Cancel a Waiting or Assigned request."""
    return L.cancel_request(svc.ctx, ident, request_id)
