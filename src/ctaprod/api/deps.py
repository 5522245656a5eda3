"""Request dependencies: the per-process services and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ctaprod.api.batching import MatchBatcher
from ctaprod.core.errors import Forbidden, Unauthorized
from ctaprod.core.identity import Identity
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.matcher import Matcher


@dataclass
class Services:
    ctx: Context
    tokens: TokenService
    matcher: Matcher
    batcher: MatchBatcher = field(init=False)

    def __post_init__(self) -> None:
        # SQLite has one writer: one matcher thread; a database server overlaps two batches.
        threads = 1 if self.ctx.db.is_sqlite else 2
        self.batcher = MatchBatcher(self.matcher, threads=threads)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


_bearer = HTTPBearer(auto_error=False, description="A ctaprod token (user, pilot or job)")


async def _verified(request: Request, creds: HTTPAuthorizationCredentials | None) -> Identity:
    # Async so that it runs on the event loop: a recently verified token costs no thread
    # hop; only a cache miss (a database lookup) goes to the thread pool.
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    tokens = (await get_services(request)).tokens
    ident = tokens.verify_cached(creds.credentials)
    if ident is None:
        ident = await run_in_threadpool(tokens.verify, creds.credentials)
    return ident


async def get_identity(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The caller of any route but pilot registration: a pilot's registration credential
    (or hand-start token) is good for registering, nothing else."""
    ident = await _verified(request, creds)
    if ident.registration_only:
        raise Forbidden("a pilot registration token is good for registering a pilot only")
    return ident


async def get_registering_identity(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The caller of pilot registration (the use case checks the credential)."""
    return await _verified(request, creds)


ServicesDep = Annotated[Services, Depends(get_services)]
IdentityDep = Annotated[Identity, Depends(get_identity)]
RegisteringDep = Annotated[Identity, Depends(get_registering_identity)]
