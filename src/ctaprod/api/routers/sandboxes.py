"""Sandbox upload and download. Uploads stream to a temporary file while being hashed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.api.routers.jobs import _chunks
from ctaprod.core.errors import InvalidInput, TooLarge
from ctaprod.core.schemas import Id
from ctaprod.logic import sandboxes as S

router = APIRouter(prefix="/api/sandboxes", tags=["sandboxes"])


@router.head("/{sha256}")
def exists(sha256: str, svc: ServicesDep, ident: IdentityDep) -> Response:
    """200 if you have uploaded this content already, 404 otherwise."""
    return Response(status_code=200 if S.has_sandbox(svc.ctx, ident, sha256) else 404)


@router.put("/{sha256}", status_code=201)
async def upload(
    sha256: str, request: Request, svc: ServicesDep, ident: IdentityDep, job_id: Id | None = None
) -> dict[str, object]:
    """Upload a tar.gz archive whose sha256 is ``sha256``; with ``job_id`` (job tokens) it
    becomes that job's output sandbox."""
    S.check_sha(sha256)
    limit = svc.ctx.settings.sandboxes.max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"sandbox of {declared} bytes is over the limit of {limit} bytes")
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix="ctaprod-sb-", suffix=".tar.gz")
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"sandbox is over the limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidInput("empty sandbox upload")
        if digest.hexdigest() != sha256:
            raise InvalidInput(
                f"uploaded content has sha256 {digest.hexdigest()}, "
                f"not {sha256} (upload cut or corrupted)"
            )
        await run_in_threadpool(S.accept_upload, svc.ctx, ident, sha256, size, path, job_id)
    finally:
        path.unlink(missing_ok=True)
    return {"sha256": sha256, "size": size, "reference": f"SB:{sha256}"}


@router.get(
    "/{sha256}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
def download(sha256: str, svc: ServicesDep, ident: IdentityDep) -> StreamingResponse:
    stream = S.open_sandbox(svc.ctx, ident, sha256)
    return StreamingResponse(_chunks(stream), media_type="application/gzip")
