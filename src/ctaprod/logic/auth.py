"""Identity management and bearer tokens (HS256 JWTs, revocable via the token table).

User and pilot tokens have a row in the database (so they can be listed and revoked); job
tokens are short-lived, bound to one job, one pilot and one attempt, and are invalidated by
the job itself moving on (rescheduled, killed, handed to another pilot).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import jwt

from ctaprod.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from ctaprod.core.identity import Identity
from ctaprod.core.properties import Property, TokenKind
from ctaprod.logic.catalog_access import retrying
from ctaprod.logic.context import Context
from ctaprod.logic.homes import ensure_homes

ISSUER = "ctaprod"
ALGORITHM = "HS256"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    user: str
    group: str
    kind: TokenKind
    expires_at: float


def check_name(name: str, what: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise InvalidInput(f"invalid {what} name {name!r}: use 1-64 letters, digits, _ . - @")
    return name


class TokenService:
    """Signs and verifies tokens. Verification of user/pilot tokens is cached briefly."""

    def __init__(self, ctx: Context, secret: str, cache_seconds: float = 5.0) -> None:
        if len(secret) < 32:
            raise ValueError("the token signing secret must be at least 32 characters")
        self.ctx = ctx
        self.secret = secret
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Identity]] = {}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def issue(
        self, user: str, group: str, kind: TokenKind, lifetime: timedelta, description: str = ""
    ) -> IssuedToken:
        """Issue a user or pilot token for a member of ``group``; recorded for revocation."""
        now = self.ctx.clock()
        with self.ctx.db.write() as conn:
            urow = self.ctx.auth.user(conn, user)
            if urow is None:
                raise NotFound(f"no user {user!r}")
            if not urow["enabled"]:
                raise InvalidInput(f"user {user!r} is disabled")
            if (user, group) not in self.ctx.auth.memberships(conn, user):
                raise InvalidInput(f"user {user!r} is not a member of group {group!r}")
            grow = self.ctx.auth.group(conn, group)
            assert grow is not None
            props = set(filter(None, grow["properties"].split(",")))
            if kind is TokenKind.PILOT and Property.GENERIC_PILOT.value not in props:
                raise InvalidInput(f"group {group!r} lacks GenericPilot: no pilot token")
            jti = secrets.token_hex(16)
            expires = now + lifetime
            self.ctx.auth.add_token(
                conn,
                {
                    "jti": jti,
                    "user": user,
                    "group": group,
                    "kind": kind.value,
                    "description": description[:255],
                    "issued_at": now,
                    "expires_at": expires,
                },
            )
        token = self._sign(
            {
                "iss": ISSUER,
                "sub": user,
                "grp": group,
                "knd": kind.value,
                "jti": jti,
                "iat": int(now.timestamp()),
                "exp": int(expires.timestamp()),
            }
        )
        return IssuedToken(token, jti, user, group, kind, expires.timestamp())

    def issue_job_token(
        self, owner: str, group: str, job_id: int, pilot_id: int, attempt: int, lifetime: timedelta
    ) -> str:
        now = self.ctx.clock()
        return self._sign(
            {
                "iss": ISSUER,
                "sub": owner,
                "grp": group,
                "knd": "job",
                "job": job_id,
                "plt": pilot_id,
                "att": attempt,
                "iat": int(now.timestamp()),
                "exp": int((now + lifetime).timestamp()),
            }
        )

    def verify_cached(self, token: str) -> Identity | None:
        """The identity of a token verified in the last few seconds, without any I/O."""
        hit = self._cache.get(token)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def verify(self, token: str) -> Identity:
        """The identity of a valid token; Unauthorized if malformed, expired or revoked."""
        cached = self.verify_cached(token)
        if cached is not None:
            return cached
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "grp", "knd"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        kind = TokenKind(claims["knd"])
        if kind is TokenKind.JOB:
            ident = Identity(
                user=claims["sub"],
                group=claims["grp"],
                kind=kind,
                properties=frozenset(),
                job_id=int(claims["job"]),
                pilot_id=int(claims["plt"]),
                attempt=int(claims["att"]),
            )
        else:
            ident = self._check_recorded(claims, kind)
        self._remember(token, ident, float(claims["exp"]))
        return ident

    def _check_recorded(self, claims: dict[str, Any], kind: TokenKind) -> Identity:
        """User and pilot tokens must still be recorded, unrevoked, for an enabled user."""
        jti = str(claims.get("jti", ""))
        with self.ctx.db.read() as conn:
            row = self.ctx.auth.token(conn, jti)
            grow = self.ctx.auth.group(conn, claims["grp"]) if row else None
            urow = self.ctx.auth.user(conn, claims["sub"]) if row else None
        if row is None or row["revoked_at"] is not None:
            raise Unauthorized("the token has been revoked")
        if grow is None or urow is None or not urow["enabled"]:
            raise Unauthorized("the token's user or group no longer exists or is disabled")
        ident = Identity(
            user=claims["sub"],
            group=claims["grp"],
            kind=kind,
            jti=jti,
            properties=frozenset(filter(None, grow["properties"].split(","))),
        )
        if "plt" in claims:
            # A pilot session token: the pilot token, narrowed to one registered pilot.
            ident = replace(ident, pilot_id=int(claims["plt"]))
        return ident

    def _remember(self, token: str, ident: Identity, expires: float) -> None:
        if len(self._cache) > 50_000:
            self._cache.clear()
        ttl = min(self.cache_seconds, expires - time.time())
        if ttl > 0:
            self._cache[token] = (time.monotonic() + ttl, ident)

    def issue_pilot_session(self, ident: Identity, pilot_id: int, lifetime: timedelta) -> str:
        """A token bound to one registered pilot, derived from (and revoked with) a pilot token."""
        now = self.ctx.clock()
        return self._sign(
            {
                "iss": ISSUER,
                "sub": ident.user,
                "grp": ident.group,
                "knd": "pilot",
                "jti": ident.jti,
                "plt": pilot_id,
                "iat": int(now.timestamp()),
                "exp": int((now + lifetime).timestamp()),
            }
        )

    def forget_all(self) -> None:
        """Drop every cached verification (users, groups or properties changed)."""
        self._cache.clear()

    def forget(self, jti: str) -> None:
        for key in [k for k, (_, i) in self._cache.items() if i.jti == jti]:
            self._cache.pop(key, None)

    def revoke(self, jti: str) -> None:
        with self.ctx.db.write() as conn:
            if self.ctx.auth.token(conn, jti) is None:
                raise NotFound(f"no token {jti!r}")
            if self.ctx.auth.revoke(conn, jti, self.ctx.clock()) == 0:
                raise Conflict(f"token {jti} is already revoked")
        self.forget(jti)


def add_group(
    ctx: Context, name: str, properties: list[str], share: float = 1.0, description: str = ""
) -> None:
    check_name(name, "group")
    known = {p.value for p in Property}
    bad = [p for p in properties if p not in known]
    if bad:
        raise InvalidInput(
            f"unknown propert{'ies' if len(bad) > 1 else 'y'} "
            f"{', '.join(bad)}; known: {', '.join(sorted(known))}"
        )
    if share <= 0:
        raise InvalidInput("a group's share must be positive")
    with ctx.db.write() as conn:
        if ctx.auth.group(conn, name) is not None:
            raise Conflict(f"group {name!r} exists already")
        ctx.auth.add_group(conn, name, properties, share, description)


def add_user(ctx: Context, name: str, groups: list[str], email: str = "") -> None:
    check_name(name, "user")

    def body() -> None:
        with ctx.db.write() as conn:
            if ctx.auth.user(conn, name) is not None:
                raise Conflict(f"user {name!r} exists already")
            for g in groups:
                if ctx.auth.group(conn, g) is None:
                    raise NotFound(f"no group {g!r}")
            ctx.auth.add_user(conn, name, email, ctx.clock())
            for g in groups:
                ctx.auth.add_member(conn, name, g)
            # The home directory, owned by the user and their first group, in the same
            # transaction: a user never exists without one.
            ensure_homes(ctx, conn, {name: groups[0] if groups else ""})

    # A concurrent creation of the same user or of a shared parent directory: try again
    # (the user then exists: Conflict).
    retrying(body)


DEFAULT_GROUPS: dict[str, tuple[list[str], float, str]] = {
    "ctao_user": (["NormalUser"], 1.0, "CTAO users"),
    "ctao_prod": (["NormalUser", "ProductionManagement"], 4.0, "CTAO production managers"),
    "ctao_admin": (
        ["NormalUser", "ProductionManagement", "JobAdministrator", "Operator", "Admin"],
        1.0,
        "CTAO administrators",
    ),
    "ctao_pilot": (["GenericPilot"], 1.0, "pilot identities"),
}


def bootstrap(ctx: Context) -> bool:
    """Create the default groups, an ``admin`` user and a ``pilot`` user if the DB is empty.

    Returns True when it created them.
    """
    with ctx.db.write() as conn:
        if ctx.auth.groups(conn):
            return False
        shares = ctx.settings.default_group_shares
        for name, (props, share, desc) in DEFAULT_GROUPS.items():
            ctx.auth.add_group(conn, name, props, shares.get(name, share), desc)
        now = ctx.clock()
        ctx.auth.add_user(conn, "admin", "", now)
        ctx.auth.add_member(conn, "admin", "ctao_admin")
        ctx.auth.add_user(conn, "pilot", "", now)
        ctx.auth.add_member(conn, "pilot", "ctao_pilot")
    return True
