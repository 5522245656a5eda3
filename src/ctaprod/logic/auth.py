"""Identity management and bearer tokens (HS256 JWTs).

Kinds of credential (docs/adr/0002-tokens.md says what each may do and how it dies):

- user tokens: recorded (listed, revoked), for one user acting in one group;
- pilot tokens, of three forms: a factory pilot's single-use registration credential, bound
  to one pilot record by its stamp (``stp``); an admin-issued hand-start token (recorded,
  revocable) that registers new pilot records only; and the session token a registration
  returns, bound to the registered pilot (``plt``), void once that pilot has ended;
- job tokens: bound to one job, one pilot and one attempt (:mod:`ctaprod.logic.job_scope`).

Every verification checks the user's *current* rights: the user enabled, still a member of
the token's group, and the group's current properties. Verifications are cached for
``cache_seconds`` per process; every change of users, groups or memberships clears the cache
of the process that made it (:meth:`TokenService.forget_all`), other processes catch up
when their cache entries expire.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import jwt

from ctaprod.core.errors import (
    Conflict,
    CtaprodError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from ctaprod.core.identity import Identity
from ctaprod.core.pilot_states import PILOT_MACHINE, PilotStatus
from ctaprod.core.properties import Property, TokenKind
from ctaprod.logic.catalog_access import retrying
from ctaprod.logic.context import Context
from ctaprod.logic.homes import ensure_homes
from ctaprod.logic.job_scope import FINISHING, job_refusal, read_job_state

ISSUER = "ctaprod"
ALGORITHM = "HS256"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")
_MAX_CACHED = 50_000


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
    """Signs and verifies tokens; verifications (and users' rights) are cached briefly."""

    def __init__(self, ctx: Context, secret: str, cache_seconds: float = 5.0) -> None:
        if len(secret) < 32:
            raise ValueError("the token signing secret must be at least 32 characters")
        self.ctx = ctx
        self.secret = secret
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Identity]] = {}
        # (user, group) -> (until, the group's properties, or the reason the user has none)
        self._rights: dict[tuple[str, str], tuple[float, frozenset[str] | str]] = {}

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
            if kind is TokenKind.JOB:
                raise InvalidInput("job tokens are issued by the matcher only")
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

    def issue_pilot_credential(self, user: str, group: str, stamp: str, lifetime: timedelta) -> str:
        """A factory pilot's registration credential: good once (the registration of the
        pilot record ``stamp``, :func:`ctaprod.logic.runtime.register_pilot` consumes it),
        until ``lifetime`` has passed. Not recorded: the pilot's row says whether it was used."""
        now = self.ctx.clock()
        return self._sign(
            {
                "iss": ISSUER,
                "sub": user,
                "grp": group,
                "knd": TokenKind.PILOT.value,
                "stp": stamp,
                "iat": int(now.timestamp()),
                "exp": int((now + lifetime).timestamp()),
            }
        )

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

    def issue_pilot_session(self, ident: Identity, pilot_id: int, lifetime: timedelta) -> str:
        """A token bound to one registered pilot; it dies when that pilot ends, and (when
        registered with a hand-start token) when that token is revoked."""
        now = self.ctx.clock()
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": ident.user,
            "grp": ident.group,
            "knd": TokenKind.PILOT.value,
            "plt": pilot_id,
            "iat": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()),
        }
        if ident.jti:
            claims["jti"] = ident.jti
        return self._sign(claims)

    def verify_cached(self, token: str) -> Identity | None:
        """The identity of a token verified in the last few seconds, without any I/O."""
        hit = self._cache.get(token)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def verify(self, token: str) -> Identity:
        """The identity of a valid token with its user's current rights; Unauthorized if
        malformed, expired, revoked, or its user is disabled or left the group; Forbidden
        for a job token whose job attempt is over, a session token whose pilot has ended."""
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
            kind = TokenKind(claims["knd"])
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        try:
            props = self.rights(str(claims["sub"]), str(claims["grp"]))
        except Unauthorized as exc:
            if kind is TokenKind.JOB:  # 403: the job wrapper then stops the payload
                raise Forbidden(exc.message) from None
            raise
        ident = Identity(
            user=str(claims["sub"]), group=str(claims["grp"]), kind=kind, properties=props
        )
        if kind is TokenKind.JOB:
            ident = replace(
                ident,
                job_id=int(claims["job"]),
                pilot_id=int(claims["plt"]),
                attempt=int(claims["att"]),
            )
            self._check_job(ident)
        elif kind is TokenKind.USER:
            ident = replace(ident, jti=self._check_recorded(claims))
        elif "stp" in claims:
            ident = replace(ident, stamp=str(claims["stp"]))  # consumed at registration
        elif "plt" in claims:
            ident = replace(ident, pilot_id=int(claims["plt"]))
            if "jti" in claims:
                ident = replace(ident, jti=self._check_recorded(claims))
            self._check_pilot(ident.pilot_id)
        else:
            ident = replace(ident, jti=self._check_recorded(claims))
        self._remember(token, ident, float(claims["exp"]))
        return ident

    def rights(self, user: str, group: str) -> frozenset[str]:
        """The current properties of ``user`` acting in ``group``; Unauthorized if the user
        is disabled or gone, or no longer a member of that group (cached briefly)."""
        now = time.monotonic()
        with self._lock:
            hit = self._rights.get((user, group))
        if hit is None or hit[0] <= now:
            with self.ctx.db.read() as conn:
                urow = self.ctx.auth.user(conn, user)
                grow = self.ctx.auth.group(conn, group)
                member = (user, group) in self.ctx.auth.memberships(conn, user)
            found: frozenset[str] | str
            if urow is None or not urow["enabled"]:
                found = f"user {user!r} is disabled or no longer exists"
            elif grow is None or not member:
                found = f"user {user!r} is no longer a member of group {group!r}"
            else:
                found = frozenset(filter(None, str(grow["properties"]).split(",")))
            hit = (now + self.cache_seconds, found)
            with self._lock:
                if len(self._rights) > _MAX_CACHED:
                    self._rights.clear()
                self._rights[(user, group)] = hit
        if isinstance(hit[1], str):
            raise Unauthorized(f"the token is void: {hit[1]}")
        return hit[1]

    def _check_recorded(self, claims: dict[str, Any]) -> str:
        """User and hand-start pilot tokens must still be recorded, unrevoked; their jti."""
        jti = str(claims.get("jti", ""))
        with self.ctx.db.read() as conn:
            row = self.ctx.auth.token(conn, jti) if jti else None
        if row is None or row["revoked_at"] is not None:
            raise Unauthorized("the token has been revoked")
        return jti

    def _check_pilot(self, pilot_id: int | None) -> None:
        """A pilot session token dies with its pilot (a final status)."""
        assert pilot_id is not None
        with self.ctx.db.read() as conn:
            status = self.ctx.pilots.statuses(conn, [pilot_id]).get(pilot_id)
        if status is None:
            raise Unauthorized(f"pilot {pilot_id} no longer exists: its token is void")
        if PilotStatus(status) in PILOT_MACHINE.final:
            raise Unauthorized(f"pilot {pilot_id} is {status}: its token is void")

    def _check_job(self, ident: Identity) -> None:
        """A job token lives while its attempt is current and the job has not ended."""
        assert ident.job_id is not None
        with self.ctx.db.read() as conn:
            state = read_job_state(self.ctx, conn, ident.job_id)
        refusal: CtaprodError | None = job_refusal(ident, state, allowed=FINISHING)
        if refusal is not None:
            # 403, not 401: the job wrapper leaves a job the server says is not its own.
            raise refusal

    def _remember(self, token: str, ident: Identity, expires: float) -> None:
        ttl = min(self.cache_seconds, expires - time.time())
        if ttl > 0:
            with self._lock:
                if len(self._cache) > _MAX_CACHED:
                    self._cache.clear()
                self._cache[token] = (time.monotonic() + ttl, ident)

    def forget_all(self) -> None:
        """Drop every cached verification and right (users, groups or memberships changed)."""
        with self._lock:
            self._cache.clear()
            self._rights.clear()

    def forget(self, jti: str) -> None:
        with self._lock:
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
