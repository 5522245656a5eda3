"""Metadata routes: fields, values, queries (LFNs streamed or paged, counts) and datasets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ctaprod.api.deps import IdentityDep, ServicesDep
from ctaprod.core.metadata import (
    DatasetCreate,
    DatasetInfo,
    FieldDeclaration,
    FieldInfo,
    LfnPage,
    MetadataSet,
    MetadataUnset,
    MetadataView,
    QueryCount,
    QueryRequest,
)
from ctaprod.logic import datasets as D
from ctaprod.logic import metadata as M
from ctaprod.logic.authz import refuse_pilot

router = APIRouter(prefix="/api/metadata", tags=["metadata"])

StreamFormat = Annotated[
    Literal["text", "ndjson"],
    Query(description="text: one LFN a line; ndjson: one JSON string a line"),
]
_MEDIA = {"text": "text/plain; charset=utf-8", "ndjson": "application/x-ndjson"}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}, "application/x-ndjson": {}}}
}


def _stream(pages: Iterator[list[str]], fmt: str) -> StreamingResponse:
    def lines() -> Iterator[str]:
        for page in pages:
            items = page if fmt == "text" else [json.dumps(lfn) for lfn in page]
            yield "\n".join(items) + "\n"

    return StreamingResponse(lines(), media_type=_MEDIA[fmt])


@router.get("/fields")
def fields(svc: ServicesDep, ident: IdentityDep) -> list[FieldInfo]:
    """The declared metadata fields."""
    refuse_pilot(ident, "read metadata")
    return M.list_fields(svc.ctx)


@router.post("/fields", status_code=201)
def add_field(body: FieldDeclaration, svc: ServicesDep, ident: IdentityDep) -> FieldInfo:
    """Declare a field (ProductionManagement or Admin)."""
    return M.add_field(svc.ctx, ident, body)


@router.delete("/fields/{name}", status_code=204)
def remove_field(name: str, svc: ServicesDep, ident: IdentityDep) -> None:
    """Remove a field that no directory or file uses."""
    M.remove_field(svc.ctx, ident, name)


@router.get("/values")
def get_values(path: str, svc: ServicesDep, ident: IdentityDep) -> MetadataView:
    """Own and effective metadata of a directory or a file."""
    refuse_pilot(ident, "read metadata")
    return M.get_metadata(svc.ctx, path)


@router.post("/values")
def set_values(body: MetadataSet, svc: ServicesDep, ident: IdentityDep) -> MetadataView:
    """Set metadata on a directory (inherited by its subtree) or a file."""
    return M.set_metadata(svc.ctx, ident, body.path, body.values)


@router.post("/values/unset")
def unset_values(body: MetadataUnset, svc: ServicesDep, ident: IdentityDep) -> MetadataView:
    return M.unset_metadata(svc.ctx, ident, body.path, body.fields)


@router.post("/find", response_class=StreamingResponse, responses=_STREAM_DOC)
def find(
    body: QueryRequest, svc: ServicesDep, ident: IdentityDep, format: StreamFormat = "text"
) -> StreamingResponse:
    """All matching LFNs, streamed (``cursor`` and ``limit`` are ignored)."""
    refuse_pilot(ident, "query metadata")
    return _stream(M.find_lfns(svc.ctx, body.query, body.path), format)


@router.post("/find/page")
def find_page(body: QueryRequest, svc: ServicesDep, ident: IdentityDep) -> LfnPage:
    """One page of matching LFNs; pass ``next_cursor`` back as ``cursor``."""
    refuse_pilot(ident, "query metadata")
    return M.find_page(svc.ctx, body.query, body.path, body.cursor, body.limit)


@router.post("/count")
def count(body: QueryRequest, svc: ServicesDep, ident: IdentityDep) -> QueryCount:
    """How many files match and their total size."""
    refuse_pilot(ident, "query metadata")
    return M.count_files(svc.ctx, body.query, body.path)


@router.post("/datasets", status_code=201)
def create_dataset(body: DatasetCreate, svc: ServicesDep, ident: IdentityDep) -> DatasetInfo:
    return D.create_dataset(svc.ctx, ident, body)


@router.get("/datasets")
def list_datasets(svc: ServicesDep, ident: IdentityDep) -> list[DatasetInfo]:
    refuse_pilot(ident, "read datasets")
    return D.list_datasets(svc.ctx)


@router.get("/datasets/{name}")
def show_dataset(name: str, svc: ServicesDep, ident: IdentityDep) -> DatasetInfo:
    """A dataset with its file count and total size (evaluated now if dynamic)."""
    refuse_pilot(ident, "read datasets")
    return D.show_dataset(svc.ctx, name)


@router.get("/datasets/{name}/files", response_class=StreamingResponse, responses=_STREAM_DOC)
def dataset_files(
    name: str, svc: ServicesDep, ident: IdentityDep, format: StreamFormat = "text"
) -> StreamingResponse:
    """The dataset's LFNs, streamed: its stored list if frozen, else the query now."""
    refuse_pilot(ident, "read datasets")
    pages = D.iter_dataset_files(svc.ctx, name)
    return _stream(([lfn for _, lfn, _ in page] for page in pages), format)


@router.post("/datasets/{name}/freeze")
def freeze_dataset(name: str, svc: ServicesDep, ident: IdentityDep) -> DatasetInfo:
    return D.freeze_dataset(svc.ctx, ident, name)


@router.delete("/datasets/{name}", status_code=204)
def delete_dataset(name: str, svc: ServicesDep, ident: IdentityDep) -> None:
    D.delete_dataset(svc.ctx, ident, name)
