"""Administration use cases: users, groups, memberships, tokens, the site mask."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from ctaprod.core.errors import Conflict, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.properties import Property, TokenKind
from ctaprod.core.schemas import (
    GroupInfo,
    GroupUpdate,
    SiteStatus,
    TokenInfo,
    TokenIssued,
    TokenRequest,
    UserInfo,
)
from ctaprod.db.sites import ACTIVE, BANNED
from ctaprod.logic.auth import TokenService, add_group, add_user, check_name
from ctaprod.logic.context import Context


def require_admin(ident: Identity) -> None:
    ident.require_user()
    ident.require(Property.ADMIN)


def list_users(ctx: Context) -> list[UserInfo]:
    with ctx.db.read() as conn:
        users = ctx.auth.users(conn)
        members: dict[str, list[str]] = defaultdict(list)
        for user, group in ctx.auth.memberships(conn):
            members[user].append(group)
    return [
        UserInfo(
            name=u["name"],
            email=u["email"],
            enabled=bool(u["enabled"]),
            groups=sorted(members[u["name"]]),
        )
        for u in users
    ]


def create_user(ctx: Context, name: str, groups: list[str], email: str) -> None:
    add_user(ctx, name, groups, email)


def set_user_enabled(ctx: Context, tokens: TokenService, name: str, enabled: bool) -> None:
    with ctx.db.write() as conn:
        if ctx.auth.set_user_enabled(conn, name, enabled) == 0:
            raise NotFound(f"no user {name!r}")
    tokens.forget_all()


def delete_user(ctx: Context, tokens: TokenService, name: str) -> None:
    with ctx.db.write() as conn:
        ctx.auth.revoke_user(conn, name, ctx.clock())
        if ctx.auth.delete_user(conn, name) == 0:
            raise NotFound(f"no user {name!r}")
    tokens.forget_all()


def list_groups(ctx: Context) -> list[GroupInfo]:
    with ctx.db.read() as conn:
        rows = ctx.auth.groups(conn)
    return [
        GroupInfo(
            name=g["name"],
            properties=[p for p in g["properties"].split(",") if p],
            share=float(g["share"]),
            description=g["description"],
        )
        for g in rows
    ]


def create_group(
    ctx: Context, name: str, properties: list[str], share: float, description: str
) -> None:
    add_group(ctx, name, properties, share, description)


def update_group(ctx: Context, tokens: TokenService, name: str, change: GroupUpdate) -> None:
    values = change.model_dump(exclude_none=True)
    if not values:
        raise InvalidInput("nothing to change")
    if "properties" in values:
        known = {p.value for p in Property}
        bad = [p for p in values["properties"] if p not in known]
        if bad:
            raise InvalidInput(f"unknown property {bad[0]!r}; known: {', '.join(sorted(known))}")
    if values.get("share", 1.0) <= 0:
        raise InvalidInput("a group's share must be positive")
    with ctx.db.write() as conn:
        if ctx.auth.update_group(conn, name, **values) == 0:
            raise NotFound(f"no group {name!r}")
    tokens.forget_all()


def add_member(ctx: Context, user: str, group: str) -> None:
    with ctx.db.write() as conn:
        if ctx.auth.user(conn, user) is None:
            raise NotFound(f"no user {user!r}")
        if ctx.auth.group(conn, group) is None:
            raise NotFound(f"no group {group!r}")
        if (user, group) in ctx.auth.memberships(conn, user):
            raise Conflict(f"{user!r} is already in {group!r}")
        ctx.auth.add_member(conn, user, group)


def remove_member(ctx: Context, user: str, group: str) -> None:
    with ctx.db.write() as conn:
        if ctx.auth.remove_member(conn, user, group) == 0:
            raise NotFound(f"{user!r} is not in {group!r}")


def issue_token(ctx: Context, tokens: TokenService, req: TokenRequest) -> TokenIssued:
    kind = TokenKind(req.kind)
    days = req.days or (
        ctx.settings.pilot_token_days if kind is TokenKind.PILOT else ctx.settings.user_token_days
    )
    t = tokens.issue(req.user, req.group, kind, timedelta(days=days), req.description)
    from datetime import UTC, datetime

    return TokenIssued(
        token=t.token,
        jti=t.jti,
        user=t.user,
        group=t.group,
        kind=t.kind.value,
        expires_at=datetime.fromtimestamp(t.expires_at, UTC),
    )


def list_tokens(ctx: Context, user: str | None) -> list[TokenInfo]:
    with ctx.db.read() as conn:
        rows = ctx.auth.tokens(conn, user)
    return [TokenInfo.model_validate(dict(r)) for r in rows]


def list_sites(ctx: Context) -> list[SiteStatus]:
    with ctx.db.read() as conn:
        rows = ctx.sites.all(conn)
    return [SiteStatus.model_validate(dict(r)) for r in rows]


def set_site(ctx: Context, ident: Identity, name: str, status: str, reason: str) -> None:
    ident.require(Property.OPERATOR, Property.ADMIN)
    check_name(name, "site")
    if status not in (ACTIVE, BANNED):
        raise InvalidInput(f"site status must be {ACTIVE} or {BANNED}")
    if status == BANNED and not reason:
        raise InvalidInput("banning a site needs a reason")
    with ctx.db.write() as conn:
        ctx.sites.set_status(conn, name, status, reason, ident.user, ctx.clock())
