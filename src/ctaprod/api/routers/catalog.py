"""Catalog routes: register and look up files, replicas, directories, ancestry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import StreamingResponse

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.catalog import (
    Count,
    DirInfo,
    DirPage,
    FileInfo,
    FileLookup,
    FileRegistration,
    LfnList,
    MkdirRequest,
    Relative,
    ReplicaRef,
)
from ctaprod.core.schemas import MAX_BATCH
from ctaprod.logic import catalog as L
from ctaprod.logic.authz import refuse_pilot
from ctaprod.logic.catalog import ListEntry

router = APIRouter(prefix="/api/catalog", tags=["catalog"])

Depth = Annotated[int, Query(ge=1, le=L.MAX_DEPTH, description="Generations to follow")]
Registrations = Annotated[list[FileRegistration], Body(max_length=MAX_BATCH)]
Replicas = Annotated[list[ReplicaRef], Body(max_length=MAX_BATCH)]
Verify = Annotated[
    bool | None, Query(description="Check size and checksum on the SE (default: settings)")
]


@router.post("/files", status_code=201)
def register_files(
    body: Registrations, svc: ServicesDep, ident: IdentityDep, verify: Verify = None
) -> list[int]:
    """Register files with their first replica, metadata and ancestry (all or nothing)."""
    return L.register_files(svc.ctx, ident, body, verify=verify)


@router.post("/files/lookup")
def lookup_files(body: LfnList, svc: ServicesDep, ident: IdentityDep) -> FileLookup:
    """The catalog entries of these LFNs; those not in the catalog are listed as missing."""
    refuse_pilot(ident, "read the file catalog")
    found = L.get_files(svc.ctx, body.lfns)
    missing = list(dict.fromkeys(lfn for lfn in body.lfns if lfn not in found))
    return FileLookup(files=list(found.values()), missing=missing)


@router.post("/files/remove")
def remove_files(body: LfnList, svc: ServicesDep, ident: IdentityDep) -> Count:
    """Remove file entries (with their replica entries, ancestry and metadata)."""
    return Count(count=L.remove_file_entries(svc.ctx, ident, body.lfns))


@router.get("/stat")
def stat(path: str, svc: ServicesDep, ident: IdentityDep) -> FileInfo | DirInfo:
    """A file's entry, or a directory's with its counts."""
    return L.stat(svc.ctx, ident, path)


@router.post("/dirs", status_code=201)
def make_dir(body: MkdirRequest, svc: ServicesDep, ident: IdentityDep) -> DirInfo:
    """Create a directory and its missing parents (an existing one is fine)."""
    return L.mkdir(svc.ctx, ident, body.path)


@router.get(
    "/dir",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def list_dir(
    path: str,
    svc: ServicesDep,
    ident: IdentityDep,
    long: Annotated[
        bool,
        Query(
            description="Owner, group, time, size, checksum and status; false: kind and "
            "name only (a plain ls, cheaper)"
        ),
    ] = True,
) -> StreamingResponse:
    """A directory's entries as NDJSON (one DirEntry per line): subdirectories, then files."""
    pages = L.listdir_pages(svc.ctx, ident, path, long=long)
    return StreamingResponse(_ndjson(pages, long), media_type="application/x-ndjson")


def _ndjson(pages: Iterator[list[ListEntry]], long: bool = True) -> Iterator[bytes]:
    # Hand-built JSON: names, checksums and times cannot hold a quote or a backslash (LFN
    # rules, hex, ISO 8601); owners, groups and statuses go through json, once per value.
    quoted: dict[str | None, str] = {}

    def q(value: str | None) -> str:
        text = quoted.get(value)
        if text is None:
            text = quoted[value] = json.dumps(value)
        return text

    for page in pages:
        if not long:
            yield "".join(f'{{"kind":"{e.kind}","name":"{e.name}"}}\n' for e in page).encode()
            continue
        lines = []
        for e in page:
            head = (
                f'{{"kind":"{e.kind}","name":"{e.name}","owner":{q(e.owner)},'
                f'"owner_group":{q(e.owner_group)},"created":"{e.created}"'
            )
            if e.kind == "file":
                head += f',"size":{e.size},"checksum":"{e.checksum}","status":{q(e.status)}'
            lines.append(head + "}\n")
        yield "".join(lines).encode()


@router.get("/dir/page")
def list_dir_page(
    path: str,
    svc: ServicesDep,
    ident: IdentityDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=L.LIST_PAGE)] = 1000,
) -> DirPage:
    """One page of a listing; pass ``next_cursor`` back as ``cursor``."""
    return L.listdir_page(svc.ctx, ident, path, cursor, limit)


@router.post("/replicas")
def add_replicas(
    body: Replicas, svc: ServicesDep, ident: IdentityDep, verify: Verify = None
) -> Count:
    """Add replica entries of catalogued files; the count of new ones."""
    return Count(count=L.add_replicas(svc.ctx, ident, body, verify=verify))


@router.post("/replicas/remove")
def remove_replicas(body: Replicas, svc: ServicesDep, ident: IdentityDep) -> Count:
    """Remove replica entries (catalog only)."""
    return Count(count=L.remove_replica_entries(svc.ctx, ident, body))


@router.get("/ancestors")
def ancestors(lfn: str, svc: ServicesDep, ident: IdentityDep, depth: Depth = 1) -> list[Relative]:
    """The files ``lfn`` was made from, nearest first."""
    return L.ancestors(svc.ctx, ident, lfn, depth)


@router.get("/descendants")
def descendants(lfn: str, svc: ServicesDep, ident: IdentityDep, depth: Depth = 1) -> list[Relative]:
    """The files made from ``lfn``, nearest first."""
    return L.descendants(svc.ctx, ident, lfn, depth)
