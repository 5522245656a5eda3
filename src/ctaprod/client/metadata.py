"""Client methods of the metadata routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from ctaprod.client.base import ClientBase, api_error
from ctaprod.client.errors import ServerUnreachable
from ctaprod.core.metadata import (
    DatasetInfo,
    FieldInfo,
    LfnPage,
    MetadataView,
    QueryCount,
)

Query = str | Mapping[str, Any]


def _body(query: Query, path: str | None, **extra: Any) -> dict[str, Any]:
    return {"query": dict(query) if isinstance(query, Mapping) else query, "path": path, **extra}


class MetadataAPI(ClientBase):
    """Metadata calls."""

    def meta_fields(self) -> list[FieldInfo]:
        return self._list("GET", "/api/metadata/fields", FieldInfo)

    def add_meta_field(self, name: str, ftype: str, description: str = "") -> FieldInfo:
        decl = {"name": name, "type": ftype, "description": description}
        return self._post("/api/metadata/fields", FieldInfo, decl)

    def remove_meta_field(self, name: str) -> None:
        self.request("DELETE", f"/api/metadata/fields/{quote(name, safe='')}")

    def get_meta(self, path: str) -> MetadataView:
        return self._get("/api/metadata/values", MetadataView, params={"path": path})

    def set_meta(self, path: str, values: Mapping[str, Any]) -> MetadataView:
        body = {"path": path, "values": dict(values)}
        return self._post("/api/metadata/values", MetadataView, body)

    def unset_meta(self, path: str, fields: list[str]) -> MetadataView:
        body = {"path": path, "fields": fields}
        return self._post("/api/metadata/values/unset", MetadataView, body)

    def find_lfns(self, query: Query, path: str | None = None) -> Iterator[str]:
        """Matching LFNs, streamed from the server as they come."""
        yield from self._lines("POST", "/api/metadata/find", json=_body(query, path))

    def find_page(
        self, query: Query, path: str | None = None, cursor: str | None = None, limit: int = 1000
    ) -> LfnPage:
        body = _body(query, path, cursor=cursor, limit=limit)
        return self._post("/api/metadata/find/page", LfnPage, body)

    def count_files(self, query: Query, path: str | None = None) -> QueryCount:
        return self._post("/api/metadata/count", QueryCount, _body(query, path))

    def create_dataset(
        self, name: str, query: Query, *, description: str = "", frozen: bool = False
    ) -> DatasetInfo:
        body = _body(query, None, name=name, description=description, frozen=frozen)
        del body["path"]
        return self._post("/api/metadata/datasets", DatasetInfo, body)

    def datasets(self) -> list[DatasetInfo]:
        return self._list("GET", "/api/metadata/datasets", DatasetInfo)

    def dataset(self, name: str) -> DatasetInfo:
        return self._get(f"/api/metadata/datasets/{quote(name, safe='')}", DatasetInfo)

    def dataset_files(self, name: str) -> Iterator[str]:
        yield from self._lines("GET", f"/api/metadata/datasets/{quote(name, safe='')}/files")

    def freeze_dataset(self, name: str) -> DatasetInfo:
        return self._post(f"/api/metadata/datasets/{quote(name, safe='')}/freeze", DatasetInfo)

    def delete_dataset(self, name: str) -> None:
        self.request("DELETE", f"/api/metadata/datasets/{quote(name, safe='')}")

    def _lines(self, method: str, path: str, **kwargs: Any) -> Iterator[str]:
        """The lines of a streamed NDJSON answer, decoded."""
        params = {"format": "ndjson"}
        try:
            with self.http.stream(method, path, params=params, **kwargs) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise api_error(resp)
                for line in resp.iter_lines():
                    if line:
                        lfn: str = json.loads(line)
                        yield lfn
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from exc
