"""Data transfer routes: streamed upload with registration, best-replica download,
replication and removal of files and replicas; the catalog <-> storage consistency check."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.consistency import ConsistencyCheck, ConsistencyReport
from ctaprod.core.errors import InvalidInput
from ctaprod.core.storage import FileUpload, RemovalResult, ReplicateRequest, StoredFile
from ctaprod.logic import consistency as C
from ctaprod.logic import dataops as D

router = APIRouter(prefix="/api/data", tags=["data"])

CHECKSUM_HEADER = "X-Ctaprod-Checksum"
SE_HEADER = "X-Ctaprod-SE"
METADATA_HEADER = "X-Ctaprod-Metadata"
CHUNK = 1 << 16


class _BodyReader:
    """A blocking ``read(n)`` over the request body, for a worker thread: each chunk is
    pulled from the event loop, so the upload streams to the SE without a local copy."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self._buffer = bytearray()
        self._done = False
        self.received = 0

    async def _pull(self) -> bytes:
        return await self._body.__anext__()

    def _next(self) -> bytes:
        try:
            return from_thread.run(self._pull)
        except StopAsyncIteration:
            self._done = True
            return b""
        except ClientDisconnect:
            raise InvalidInput(
                f"upload cut by the client after {self.received} bytes", received=self.received
            ) from None

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = self._next()
            self.received += len(chunk)
            self._buffer += chunk
        count = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:count])
        del self._buffer[:count]
        return out


def _content_length(request: Request) -> int | None:
    # Read here, not declared as a parameter: the server (and RequestLimits) checked it.
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _metadata(query: str | None, header: str | None) -> dict[str, Any]:
    text = query or header
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object of field -> value")
    return value


@router.put("/files", status_code=201)
async def put_file(
    request: Request,
    svc: ServicesDep,
    ident: IdentityDep,
    lfn: str,
    se: Annotated[str | None, Query(description="Target SE (default: data.default_se)")] = None,
    metadata: Annotated[str | None, Query(description="JSON object of metadata")] = None,
    parent: Annotated[list[str] | None, Query(description="Ancestor LFNs")] = None,
    guid: str | None = None,
    checksum: Annotated[str | None, Query(description="ADLER32 the client computed")] = None,
    x_ctaprod_metadata: Annotated[str | None, Header(description="Metadata (JSON)")] = None,
) -> StoredFile:
    """Stream the body to the SE, check size and ADLER32, register the file. A cut upload
    (body shorter than Content-Length, client gone) leaves no file and no entry."""
    try:
        upload = FileUpload(
            lfn=lfn,
            guid=guid,
            metadata=_metadata(metadata, x_ctaprod_metadata),
            parents=parent or [],
            size=_content_length(request),
            checksum=checksum,
        )
    except ValidationError as exc:
        raise InvalidInput(str(exc.errors()[0]["msg"])) from None
    reader = _BodyReader(request.stream().__aiter__())
    # Each upload holds a thread while its body arrives: a few at once, never the whole pool.
    async with request.app.state.upload_slots:
        return await run_in_threadpool(D.put_and_register, svc.ctx, ident, upload, reader, se)  # type: ignore[arg-type]


def _chunks(replica: D.OpenReplica) -> Iterator[bytes]:
    try:
        while chunk := replica.stream.read(CHUNK):
            yield chunk
    finally:
        replica.stream.close()


@router.get(
    "/files",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_file(
    svc: ServicesDep,
    ident: IdentityDep,
    lfn: str,
    site: Annotated[str | None, Query(description="Prefer replicas at this site")] = None,
) -> StreamingResponse:
    """The file's bytes from its best readable replica; its ADLER32 in X-Ctaprod-Checksum."""
    replica = D.open_best_replica(svc.ctx, ident, lfn, site)
    return StreamingResponse(
        _chunks(replica),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(replica.info.size),
            CHECKSUM_HEADER: replica.info.checksum,
            SE_HEADER: replica.se,
        },
    )


@router.post("/replicate")
def replicate(body: ReplicateRequest, svc: ServicesDep, ident: IdentityDep) -> StoredFile:
    """Copy a file to another SE (checked), then register the new replica."""
    return D.replicate_and_register(svc.ctx, ident, body.lfn, body.target_se, body.source_se)


@router.delete("/files")
def remove_file(lfn: str, svc: ServicesDep, ident: IdentityDep) -> RemovalResult:
    """Remove every replica from storage, then the catalog entry."""
    return D.remove_file(svc.ctx, ident, lfn)


@router.delete("/replicas")
def remove_replica(lfn: str, se: str, svc: ServicesDep, ident: IdentityDep) -> RemovalResult:
    """Remove one replica (not the last one: remove the file instead)."""
    return D.remove_replica(svc.ctx, ident, lfn, se)


@router.post("/check")
def check(body: ConsistencyCheck, svc: ServicesDep, ident: IdentityDep) -> ConsistencyReport:
    """Compare the catalog's replicas on an SE under a directory with the SE's files there
    (orphans, missing files, sizes, optionally ADLER32); optionally remove stale temporary
    uploads (Operator, Admin)."""
    return C.check(
        svc.ctx,
        ident,
        body.path,
        body.se,
        checksums=body.checksums,
        limit=body.limit,
        remove_stale_uploads=body.remove_stale_uploads,
        min_age=timedelta(seconds=body.min_age),
        force=body.force,
    )
