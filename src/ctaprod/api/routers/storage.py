"""Storage element routes: list (with what a job wrapper needs to build the plugin), show
with history, ban and allow."""

from __future__ import annotations

from fastapi import APIRouter

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.storage import AccessChange, StorageElementDetail, StorageElementInfo
from ctaprod.logic import storage as S

router = APIRouter(prefix="/api/storage", tags=["storage"])


@router.get("/elements")
def elements(svc: ServicesDep, ident: IdentityDep) -> list[StorageElementInfo]:
    """Every data SE: plugin, endpoint, base path, site, options (credentials only for
    admins, and for a job token those of its own job's SEs), groups and read/write access."""
    return S.elements_for(svc.ctx, ident)


@router.get("/elements/{se}")
def show(se: str, svc: ServicesDep, ident: IdentityDep) -> StorageElementDetail:
    """One SE and the history of its bans, newest first."""
    return S.show_for(svc.ctx, ident, se)


@router.post("/elements/{se}/ban")
def ban(se: str, body: AccessChange, svc: ServicesDep, ident: IdentityDep) -> StorageElementInfo:
    """Ban an SE for read, write or both, with a reason (Operator or Admin)."""
    return S.ban(svc.ctx, ident, se, body.access, body.reason)


@router.post("/elements/{se}/allow")
def allow(se: str, body: AccessChange, svc: ServicesDep, ident: IdentityDep) -> StorageElementInfo:
    """Lift a ban for read, write or both (Operator or Admin)."""
    return S.allow(svc.ctx, ident, se, body.access, body.reason)
