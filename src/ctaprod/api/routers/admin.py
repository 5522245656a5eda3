"""Administration routes (Admin property) and the identity of the caller."""

from __future__ import annotations

from fastapi import APIRouter

from ctaprod.api.deps import IdentityDep, RegisteringDep, ServicesDep
from ctaprod.core.schemas import (
    GroupCreate,
    GroupInfo,
    GroupUpdate,
    MembershipChange,
    SiteChange,
    SiteStatus,
    TokenInfo,
    TokenIssued,
    TokenRequest,
    UserCreate,
    UserInfo,
    WhoAmI,
)
from ctaprod.logic import admin as A

router = APIRouter(prefix="/api/admin", tags=["admin"])
auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
sites_router = APIRouter(prefix="/api/sites", tags=["sites"])


@auth_router.get("/whoami")
def whoami(ident: RegisteringDep) -> WhoAmI:
    return WhoAmI(
        user=ident.user,
        group=ident.group,
        kind=ident.kind.value,
        properties=sorted(ident.properties),
    )


@router.get("/users")
def users(svc: ServicesDep, ident: IdentityDep) -> list[UserInfo]:
    A.require_admin(ident)
    return A.list_users(svc.ctx)


@router.post("/users", status_code=201)
def create_user(body: UserCreate, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.create_user(svc.ctx, body.name, body.groups, body.email)


@router.post("/users/{name}/enable", status_code=204)
def enable_user(name: str, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.set_user_enabled(svc.ctx, svc.tokens, name, True)


@router.post("/users/{name}/disable", status_code=204)
def disable_user(name: str, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.set_user_enabled(svc.ctx, svc.tokens, name, False)


@router.delete("/users/{name}", status_code=204)
def delete_user(name: str, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.delete_user(svc.ctx, svc.tokens, name)


@router.get("/groups")
def groups(svc: ServicesDep, ident: IdentityDep) -> list[GroupInfo]:
    A.require_admin(ident)
    return A.list_groups(svc.ctx)


@router.post("/groups", status_code=201)
def create_group(body: GroupCreate, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.create_group(svc.ctx, body.name, body.properties, body.share, body.description)


@router.patch("/groups/{name}", status_code=204)
def update_group(name: str, body: GroupUpdate, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.update_group(svc.ctx, svc.tokens, name, body)


@router.post("/members", status_code=201)
def add_member(body: MembershipChange, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.add_member(svc.ctx, svc.tokens, body.user, body.group)


@router.post("/members/remove", status_code=204)
def remove_member(body: MembershipChange, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    A.remove_member(svc.ctx, svc.tokens, body.user, body.group)


@router.get("/tokens")
def tokens(svc: ServicesDep, ident: IdentityDep, user: str | None = None) -> list[TokenInfo]:
    A.require_admin(ident)
    return A.list_tokens(svc.ctx, user)


@router.post("/tokens", status_code=201)
def issue_token(body: TokenRequest, svc: ServicesDep, ident: IdentityDep) -> TokenIssued:
    A.require_admin(ident)
    return A.issue_token(svc.ctx, svc.tokens, body)


@router.delete("/tokens/{jti}", status_code=204)
def revoke_token(jti: str, svc: ServicesDep, ident: IdentityDep) -> None:
    A.require_admin(ident)
    svc.tokens.revoke(jti)


@sites_router.get("")
def sites(svc: ServicesDep, ident: IdentityDep) -> list[SiteStatus]:
    ident.require_user()
    return A.list_sites(svc.ctx)


@sites_router.put("/{name}", status_code=204)
def set_site(name: str, body: SiteChange, svc: ServicesDep, ident: IdentityDep) -> None:
    """Ban a site (it gets no more jobs) or allow it again; needs Operator or Admin."""
    A.set_site(svc.ctx, ident, name, body.status, body.reason)
    svc.matcher.invalidate()
