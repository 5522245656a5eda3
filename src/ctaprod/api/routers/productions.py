"""Production routes: submit (or dry-run), list, show, status, log, drive and validate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.prod_views import (
    ProdLogEntry,
    ProductionDryRun,
    ProductionStatusView,
    ProductionView,
    ValidationOutcome,
)
from ctaprod.core.schemas import INT64_MAX
from ctaprod.logic import productions as L

router = APIRouter(prefix="/api/productions", tags=["productions"])
MAX_PAGE = L.MAX_PAGE
Ref = Annotated[str, "a production ID or name"]


class Submission(BaseModel):
    """A production definition (any registered format) and what the format may need."""

    definition: dict[str, Any] = Field(description="The production definition (YAML keys)")
    name: str | None = Field(None, description="The production's name (overrides the file's)")
    mc_tasks: int | None = Field(None, ge=1, description="Default number of MC tasks")


class Extension(BaseModel):
    tasks: int = Field(ge=1, description="More tasks on each MC step")


class Validation(BaseModel):
    checksum: Literal["full", "sample", "none"] = "sample"
    sample: int = Field(100, ge=0, description="Files whose checksum is verified (sample)")


@router.post("", status_code=201)
def submit(body: Submission, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    """Create a production and every step's transformation (ProductionManagement), all in
    one transaction or nothing."""
    return L.submit(svc.ctx, ident, body.definition, name=body.name, mc_tasks=body.mc_tasks)


@router.post("/dry-run")
def dry_run(body: Submission, svc: ServicesDep, ident: IdentityDep) -> ProductionDryRun:
    """What a submission would create today (per step: its transformation, input query,
    files matching now, tasks), nothing created."""
    return L.dry_run(svc.ctx, ident, body.definition, name=body.name, mc_tasks=body.mc_tasks)


@router.get("")
def search(
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[str] | None, Query()] = None,
    owner: str | None = None,
    after: Annotated[int, Query(ge=0, le=INT64_MAX, description="Productions after this ID")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[ProductionView]:
    """Productions in ID order."""
    ident.require_user()
    return L.search(svc.ctx, statuses=status or [], owner=owner, after=after, limit=limit)


@router.get("/{ref}")
def show(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    ident.require_user()
    return L.get(svc.ctx, ref)


@router.get("/{ref}/status")
def status(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> ProductionStatusView:
    """Per step: files, tasks and jobs by status, failures by reason."""
    ident.require_user()
    return L.status(svc.ctx, ref)


@router.get("/{ref}/log")
def log(
    ref: Ref,
    svc: ServicesDep,
    ident: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> list[ProdLogEntry]:
    """Every action on it: who, what, when (the last ``limit``)."""
    ident.require_user()
    return L.log(svc.ctx, ref, limit)


@router.post("/{ref}/start")
def start(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    return L.start(svc.ctx, ident, ref)


@router.post("/{ref}/stop")
def stop(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    return L.stop(svc.ctx, ident, ref)


@router.post("/{ref}/flush")
def flush(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    """The roots' input is complete; the children follow as their parents complete."""
    return L.flush(svc.ctx, ident, ref)


@router.post("/{ref}/extend")
def extend(ref: Ref, body: Extension, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    """More tasks on the MC steps."""
    return L.extend(svc.ctx, ident, ref, body.tasks)


@router.post("/{ref}/clean")
def clean(ref: Ref, svc: ServicesDep, ident: IdentityDep) -> ProductionView:
    """Clean every step (jobs killed, outputs removed), then Cleaned."""
    return L.clean(svc.ctx, ident, ref)


@router.post("/{ref}/validate")
def validate(ref: Ref, body: Validation, svc: ServicesDep, ident: IdentityDep) -> ValidationOutcome:
    """Validate every step and record the outcome on the production."""
    return L.validate(svc.ctx, ident, ref, checksum=body.checksum, sample=body.sample)
