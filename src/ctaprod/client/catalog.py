"""Client methods of the catalog routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import httpx
from pydantic import TypeAdapter

from ctaprod.client.base import ClientBase, api_error
from ctaprod.client.errors import ServerUnreachable
from ctaprod.core.catalog import (
    Count,
    DirEntry,
    DirInfo,
    FileInfo,
    FileLookup,
    FileRegistration,
    Relative,
    ReplicaRef,
)

REGISTER_BATCH = 1_000
LOOKUP_BATCH = 5_000
_PATH_INFO: TypeAdapter[FileInfo | DirInfo] = TypeAdapter(FileInfo | DirInfo)
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class CatalogAPI(ClientBase):
    """Catalog calls."""

    def register_files(
        self,
        regs: Sequence[FileRegistration],
        progress: Callable[[int], None] | None = None,
        *,
        verify: bool | None = None,
        batch: int = REGISTER_BATCH,
    ) -> list[int]:
        """Register files in batches (each batch all or nothing); their ids in input order.

        ``progress`` is called with the number of files registered after each batch.
        """
        params = {} if verify is None else {"verify": verify}
        ids: list[int] = []
        for chunk in _chunks(regs, batch):
            body = [r.model_dump(mode="json", exclude_defaults=True) for r in chunk]
            ids.extend(self._list("POST", "/api/catalog/files", int, json=body, params=params))
            if progress is not None:
                progress(len(chunk))
        return ids

    def files(self, lfns: Sequence[str]) -> dict[str, FileInfo]:
        """Catalog entries of the LFNs that exist (missing ones are absent)."""
        out: dict[str, FileInfo] = {}
        for chunk in _chunks(lfns, LOOKUP_BATCH):
            found = self._post("/api/catalog/files/lookup", FileLookup, {"lfns": chunk})
            out.update((f.lfn, f) for f in found.files)
        return out

    def stat(self, path: str) -> FileInfo | DirInfo:
        """A file's entry or a directory's (with counts)."""
        resp = self.request("GET", "/api/catalog/stat", params={"path": path})
        return _PATH_INFO.validate_json(resp.content)

    def listdir(self, path: str, *, long: bool = True) -> Iterator[DirEntry]:
        """A directory's entries (subdirectories, then files, by name), streamed.

        ``long=False``: the kind and the name only (owner, group, time, size... are None).
        """
        params = {"path": path, "long": "true" if long else "false"}
        try:
            with self.http.stream("GET", "/api/catalog/dir", params=params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise api_error(resp)
                for line in resp.iter_lines():
                    if line:
                        yield DirEntry.model_validate_json(line)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from exc

    def mkdir(self, path: str) -> DirInfo:
        return self._post("/api/catalog/dirs", DirInfo, {"path": path})

    def add_replicas(self, refs: Sequence[ReplicaRef], *, verify: bool | None = None) -> int:
        """Add replica entries; the number of new ones."""
        params = {} if verify is None else {"verify": verify}
        body = [r.model_dump() for r in refs]
        return self._post("/api/catalog/replicas", Count, body, params=params).count

    def remove_replica_entries(self, refs: Sequence[ReplicaRef]) -> int:
        body = [r.model_dump() for r in refs]
        return self._post("/api/catalog/replicas/remove", Count, body).count

    def remove_file_entries(self, lfns: Sequence[str]) -> int:
        return self._post("/api/catalog/files/remove", Count, {"lfns": list(lfns)}).count

    def ancestors(self, lfn: str, depth: int = 1) -> list[Relative]:
        params = {"lfn": lfn, "depth": depth}
        return self._list("GET", "/api/catalog/ancestors", Relative, params=params)

    def descendants(self, lfn: str, depth: int = 1) -> list[Relative]:
        params = {"lfn": lfn, "depth": depth}
        return self._list("GET", "/api/catalog/descendants", Relative, params=params)
