"""Administration use cases: users, groups, memberships, tokens, the site mask."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import Connection

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

HAND_PILOT_TOKEN_DAYS = 1.0  # default lifetime of an admin-issued (hand-start) pilot token


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


def _keep_an_admin(
    ctx: Context,
    conn: Connection,
    *,
    without_users: frozenset[str] = frozenset(),
    without_member: tuple[str, str] | None = None,
    group_props: tuple[str, list[str]] | None = None,
) -> None:
    """Conflict if the change would leave no enabled user holding Admin.

    The groups are row-locked first: two such changes run one after the other, and the
    second sees what the first did (two admins disabling each other leave one)."""
    admin = Property.ADMIN.value
    locked = ctx.auth.lock_groups_with(conn, admin)
    admin_groups = {str(g["name"]) for g in locked}
    if group_props is not None:
        name, props = group_props
        if admin in props:
            admin_groups.add(name)
        else:
            admin_groups.discard(name)
    before = ctx.auth.enabled_members(conn, [str(g["name"]) for g in locked])
    if not before:
        return  # no admin today (a bare database): nothing to keep
    holders: set[str] = set()
    for user, group in ctx.auth.memberships(conn):
        if group in admin_groups and (user, group) != without_member:
            holders.add(user)
    enabled = ctx.auth.enabled_members(conn, sorted(admin_groups)) & holders
    if not enabled - without_users:
        raise Conflict(
            "this would leave no enabled user with the Admin property: "
            "give another user Admin first"
        )


def set_user_enabled(ctx: Context, tokens: TokenService, name: str, enabled: bool) -> None:
    """Enable or disable a user; the last enabled Admin cannot be disabled (Conflict)."""
    with ctx.db.write() as conn:
        if not enabled:
            _keep_an_admin(ctx, conn, without_users=frozenset({name}))
        if ctx.auth.set_user_enabled(conn, name, enabled) == 0:
            raise NotFound(f"no user {name!r}")
    tokens.forget_all()


def delete_user(ctx: Context, tokens: TokenService, name: str) -> None:
    """Delete a user and revoke their tokens; never the last enabled Admin (Conflict)."""
    with ctx.db.write() as conn:
        _keep_an_admin(ctx, conn, without_users=frozenset({name}))
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
        if "properties" in values:
            _keep_an_admin(ctx, conn, group_props=(name, list(values["properties"])))
        if ctx.auth.update_group(conn, name, **values) == 0:
            raise NotFound(f"no group {name!r}")
    tokens.forget_all()


def add_member(ctx: Context, tokens: TokenService, user: str, group: str) -> None:
    with ctx.db.write() as conn:
        if ctx.auth.user(conn, user) is None:
            raise NotFound(f"no user {user!r}")
        if ctx.auth.group(conn, group) is None:
            raise NotFound(f"no group {group!r}")
        if (user, group) in ctx.auth.memberships(conn, user):
            raise Conflict(f"{user!r} is already in {group!r}")
        ctx.auth.add_member(conn, user, group)
    tokens.forget_all()


def remove_member(ctx: Context, tokens: TokenService, user: str, group: str) -> None:
    """Take ``user`` out of ``group``: their tokens for that group die within the
    verification cache (at once in this process); never the last enabled Admin's."""
    with ctx.db.write() as conn:
        _keep_an_admin(ctx, conn, without_member=(user, group))
        if ctx.auth.remove_member(conn, user, group) == 0:
            raise NotFound(f"{user!r} is not in {group!r}")
    tokens.forget_all()


def issue_token(ctx: Context, tokens: TokenService, req: TokenRequest) -> TokenIssued:
    kind = TokenKind(req.kind)
    # A hand-start pilot token registers new pilots (of hand-started pilots) only: short-lived.
    days = req.days or (
        HAND_PILOT_TOKEN_DAYS if kind is TokenKind.PILOT else ctx.settings.user_token_days
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
