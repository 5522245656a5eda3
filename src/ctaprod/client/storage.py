"""Client methods of the storage and data-transfer routes (mixed into
:class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ctaprod.client.base import ClientBase, api_error
from ctaprod.client.errors import ServerUnreachable
from ctaprod.core.checksum import Adler32, adler32_of
from ctaprod.core.consistency import DEFAULT_LIMIT, DEFAULT_STALE_AGE, ConsistencyReport
from ctaprod.core.errors import Unavailable
from ctaprod.core.storage import (
    AccessChange,
    BanAccess,
    RemovalResult,
    ReplicateRequest,
    StorageElementDetail,
    StorageElementInfo,
    StoredFile,
)

Progress = Callable[[int], None]  # called with the number of bytes just moved
CHUNK = 1 << 20


def _read_chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            if progress is not None:
                progress(len(chunk))
            yield chunk


class StorageAPI(ClientBase):
    """Storage element and data-transfer calls."""

    # --- storage elements ------------------------------------------------------------
    def se_list(self) -> list[StorageElementInfo]:
        return self._list("GET", "/api/storage/elements", StorageElementInfo)

    def se_show(self, se: str) -> StorageElementDetail:
        return self._get(f"/api/storage/elements/{se}", StorageElementDetail)

    def se_ban(self, se: str, access: BanAccess, reason: str) -> StorageElementInfo:
        body = AccessChange(access=access, reason=reason).model_dump()
        return self._post(f"/api/storage/elements/{se}/ban", StorageElementInfo, body)

    def se_allow(self, se: str, access: BanAccess, reason: str = "") -> StorageElementInfo:
        body = AccessChange(access=access, reason=reason).model_dump()
        return self._post(f"/api/storage/elements/{se}/allow", StorageElementInfo, body)

    # --- data transfers --------------------------------------------------------------
    def data_put(
        self,
        local: Path,
        lfn: str,
        *,
        se: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        parents: Sequence[str] = (),
        guid: str | None = None,
        progress: Progress | None = None,
    ) -> StoredFile:
        """Upload ``local`` as ``lfn`` (streamed) and register it; the server checks the
        size and the ADLER32 computed here."""
        params: dict[str, Any] = {"lfn": lfn, "checksum": adler32_of(local, CHUNK)}
        if se:
            params["se"] = se
        if metadata:
            params["metadata"] = json.dumps(dict(metadata))
        if parents:
            params["parent"] = list(parents)
        if guid:
            params["guid"] = guid
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(local.stat().st_size),
        }
        resp = self.request(
            "PUT",
            "/api/data/files",
            params=params,
            content=_read_chunks(local, progress),
            headers=headers,
            timeout=httpx.Timeout(60.0, read=None),
        )
        return StoredFile.model_validate_json(resp.content)

    def data_get(
        self,
        lfn: str,
        dest: Path,
        *,
        site: str | None = None,
        progress: Progress | None = None,
        total: Callable[[int], None] | None = None,
    ) -> str:
        """Download ``lfn`` to ``dest`` (written under a temporary name, checked against the
        catalog's size and ADLER32, then renamed); returns the SE it came from."""
        params = {"lfn": lfn, **({"site": site} if site else {})}
        tmp = dest.with_name(f".{dest.name}.part")
        digest = Adler32()
        try:
            with self.http.stream("GET", "/api/data/files", params=params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise api_error(resp)
                expected = int(resp.headers.get("content-length", -1))
                if total is not None:
                    total(expected)
                with tmp.open("wb") as out:
                    for chunk in resp.iter_bytes(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
                size, checksum = digest.size, digest.hexdigest()
                want = resp.headers.get("x-ctaprod-checksum", checksum)
                if size != expected or checksum != want:
                    raise Unavailable(
                        f"download of {lfn} is damaged: {size} bytes with ADLER32 {checksum}, "
                        f"expected {expected} bytes with {want}",
                        lfn=lfn,
                        reason="checksum_mismatch",
                    )
                se = str(resp.headers.get("x-ctaprod-se", ""))
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            raise ServerUnreachable(f"download of {lfn} from {self.url} failed: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(dest)
        return se

    def data_replicate(self, lfn: str, target_se: str, source_se: str | None = None) -> StoredFile:
        body = ReplicateRequest(lfn=lfn, target_se=target_se, source_se=source_se)
        return self._post(
            "/api/data/replicate",
            StoredFile,
            body.model_dump(),
            timeout=httpx.Timeout(60.0, read=None),
        )

    def data_remove_file(self, lfn: str) -> RemovalResult:
        resp = self.request("DELETE", "/api/data/files", params={"lfn": lfn})
        return RemovalResult.model_validate_json(resp.content)

    def data_remove_replica(self, lfn: str, se: str) -> RemovalResult:
        resp = self.request("DELETE", "/api/data/replicas", params={"lfn": lfn, "se": se})
        return RemovalResult.model_validate_json(resp.content)

    def data_check(
        self,
        path: str,
        se: str,
        *,
        checksums: bool = False,
        limit: int = DEFAULT_LIMIT,
        remove_stale_uploads: bool = False,
        min_age: int = DEFAULT_STALE_AGE,
        force: bool = False,
    ) -> ConsistencyReport:
        """Compare the catalog's replicas on ``se`` under ``path`` with the SE's files (may
        take long: no read timeout)."""
        body = {
            "path": path,
            "se": se,
            "checksums": checksums,
            "limit": limit,
            "remove_stale_uploads": remove_stale_uploads,
            "min_age": min_age,
            "force": force,
        }
        return self._post(
            "/api/data/check", ConsistencyReport, body, timeout=httpx.Timeout(60.0, read=None)
        )
