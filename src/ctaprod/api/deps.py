"""Request dependencies: the per-process services and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ctaprod.core.errors import Unauthorized
from ctaprod.core.identity import Identity
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.matcher import Matcher


@dataclass
class Services:
    ctx: Context
    tokens: TokenService
    matcher: Matcher


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


_bearer = HTTPBearer(auto_error=False, description="A ctaprod token (user, pilot or job)")


def get_identity(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return get_services(request).tokens.verify(creds.credentials)


ServicesDep = Annotated[Services, Depends(get_services)]
IdentityDep = Annotated[Identity, Depends(get_identity)]
