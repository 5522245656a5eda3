"""Transformation routes: create (or dry-run), list, show, files, tasks, log, and drive."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.schemas import INT64_MAX
from ctaprod.core.trans_views import (
    AttachResult,
    DryRun,
    TaskView,
    TransFileView,
    TransformationView,
    TransLogEntry,
)
from ctaprod.logic import transformations as L

router = APIRouter(prefix="/api/transformations", tags=["transformations"])
MAX_PAGE = L.MAX_PAGE
Ref = Annotated[str, "a transformation ID or name"]


class Extension(BaseModel):
    """What ``extend`` changes: a new input query, or more tasks (MCSimulation)."""

    query: str | None = Field(None, description="The new input query")
    max_tasks: int | None = Field(None, ge=1)


@router.post(
    "",
    status_code=201,
    responses={200: {"model": DryRun, "description": "dry run: what it would do"}},
)
def create(
    svc: ServicesDep,
    ident: IdentityDep,
    response: Response,
    definition: Annotated[dict[str, Any], Body(description="The definition (YAML keys)")],
    dry_run: bool = False,
    start: bool = False,
) -> TransformationView | DryRun:
    """Create a transformation from its definition (ProductionManagement); its existing input
    files are attached. ``dry_run``: the files its query matches today and the tasks it would
    make, nothing created. ``start``: Active at once (else New)."""
    if dry_run:
        response.status_code = 200
        return L.dry_run(svc.ctx, ident, definition)
    return L.create(svc.ctx, ident, definition, start=start)


@router.get("")
def search(
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[str] | None, Query()] = None,
    type: Annotated[list[str] | None, Query()] = None,
    owner: str | None = None,
    after: Annotated[
        int, Query(ge=0, le=INT64_MAX, description="Transformations after this ID")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[TransformationView]:
    """Transformations in ID order, with their files and tasks counted by status."""
    ident.require_user()
    return L.search(
        svc.ctx, statuses=status or [], types=type or [], owner=owner, after=after, limit=limit
    )


@router.get("/{ref}")
def show(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    ident.require_user()
    return L.get(svc.ctx, ref)


@router.get("/{ref}/files")
def files(
    ref: Ref,
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[str] | None, Query()] = None,
    after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> list[TransFileView]:
    """Its files in attachment order; pass the last ``id`` as ``after`` for the next page."""
    ident.require_user()
    return L.files(svc.ctx, ref, statuses=status or [], after=after, limit=limit)


@router.get("/{ref}/tasks")
def tasks(
    ref: Ref,
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[str] | None, Query()] = None,
    after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    inputs: bool = False,
) -> list[TaskView]:
    """Its tasks in ID order (``inputs``: with their input LFNs)."""
    ident.require_user()
    return L.tasks(
        svc.ctx, ref, statuses=status or [], after=after, limit=limit, with_inputs=inputs
    )


@router.get("/{ref}/log")
def log(
    ref: Ref,
    svc: ServicesDep,
    ident: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> list[TransLogEntry]:
    """Every action on it: who, what, when (the last ``limit``)."""
    ident.require_user()
    return L.log(svc.ctx, ref, limit)


@router.post("/{ref}/start")
def start(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    return L.start(svc.ctx, ident, ref)


@router.post("/{ref}/stop")
def stop(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    return L.stop(svc.ctx, ident, ref)


@router.post("/{ref}/flush")
def flush(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    """Make the last, smaller groups now."""
    return L.flush(svc.ctx, ident, ref)


@router.post("/{ref}/input-complete")
def input_complete(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    """No more input will come: flush, then complete when its tasks are over."""
    return L.input_complete(svc.ctx, ident, ref)


@router.post("/{ref}/clean")
def clean(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    """Kill its live tasks, remove the files its jobs registered (catalog and storage), end it
    (Cleaning, then Cleaned)."""
    return L.clean(svc.ctx, ident, ref)


@router.post("/{ref}/extend")
def extend(ref: Ref, body: Extension, svc: ServicesDep, ident: IdentityDep) -> TransformationView:
    return L.extend(svc.ctx, ident, ref, query=body.query, max_tasks=body.max_tasks)


@router.post("/{ref}/rescan")
def rescan(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> AttachResult:
    """Repair: run the input query over the catalog and attach the files missing."""
    return L.rescan(svc.ctx, ident, ref)
