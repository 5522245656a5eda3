"""Typed HTTP client of the ctaprod API, built on the same pydantic models as the server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from ctaprod.client.base import ClientBase, api_error
from ctaprod.client.catalog import CatalogAPI
from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.metadata import MetadataAPI
from ctaprod.client.productions import ProductionsAPI
from ctaprod.client.requests import RequestsAPI
from ctaprod.client.storage import StorageAPI
from ctaprod.client.transformations import TransformationsAPI
from ctaprod.core.jobs import HistoryEntry, JobDetail, JobSummary
from ctaprod.core.matching import Resource
from ctaprod.core.schemas import (
    GroupInfo,
    HeartbeatItem,
    ItemResult,
    JobFilter,
    JobPage,
    MatchResponse,
    PilotInfo,
    PilotRegistered,
    SiteStatus,
    StatusReport,
    SubmitResponse,
    TokenInfo,
    TokenIssued,
    UserInfo,
    WhoAmI,
)


class Client(
    CatalogAPI,
    MetadataAPI,
    StorageAPI,
    RequestsAPI,
    TransformationsAPI,
    ProductionsAPI,
    ClientBase,
):
    """The typed client of the whole API. Use as a context manager."""

    # --- identity ---------------------------------------------------------------------
    def whoami(self) -> WhoAmI:
        return self._get("/api/auth/whoami", WhoAmI)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/health").json()
        return result

    # --- jobs -------------------------------------------------------------------------
    def submit(
        self,
        *,
        text: str | None = None,
        fmt: str = "auto",
        documents: Sequence[dict[str, Any]] | None = None,
    ) -> list[int]:
        body = {
            "text": text,
            "format": fmt,
            "documents": list(documents) if documents is not None else None,
        }
        return self._post("/api/jobs", SubmitResponse, body).job_ids

    def search(
        self,
        flt: JobFilter | None = None,
        *,
        limit: int = 100,
        cursor: int | None = None,
        ascending: bool = False,
    ) -> JobPage:
        params: dict[str, Any] = {"limit": limit, "ascending": ascending}
        if cursor is not None:
            params["cursor"] = cursor
        body = (flt or JobFilter()).model_dump(mode="json")
        return self._post("/api/jobs/search", JobPage, body, params=params)

    def iter_jobs(self, flt: JobFilter | None = None, page: int = 500) -> Iterator[JobSummary]:
        cursor = None
        while True:
            result = self.search(flt, limit=page, cursor=cursor)
            yield from result.jobs
            if result.next_cursor is None:
                return
            cursor = result.next_cursor

    def count(self, flt: JobFilter | None = None) -> int:
        return int(
            self.request(
                "POST", "/api/jobs/count", json=(flt or JobFilter()).model_dump(mode="json")
            ).json()
        )

    def summary(self, flt: JobFilter | None = None, by: str = "site") -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self.request(
            "POST",
            "/api/jobs/summary",
            params={"by": by},
            json=(flt or JobFilter()).model_dump(mode="json"),
        ).json()
        return result

    def job(self, job_id: int) -> JobDetail:
        return self._get(f"/api/jobs/{job_id}", JobDetail)

    def history(self, job_id: int) -> list[HistoryEntry]:
        return self._list("GET", f"/api/jobs/{job_id}/history", HistoryEntry)

    def kill(self, job_ids: Sequence[int]) -> None:
        self.request("POST", "/api/jobs/kill", json={"job_ids": list(job_ids)})

    def reschedule(self, job_ids: Sequence[int]) -> dict[int, str]:
        out: dict[str, str] = self.request(
            "POST", "/api/jobs/reschedule", json={"job_ids": list(job_ids)}
        ).json()["statuses"]
        return {int(k): v for k, v in out.items()}

    def delete(self, job_ids: Sequence[int]) -> None:
        self.request("POST", "/api/jobs/delete", json={"job_ids": list(job_ids)})

    def download_output(self, job_id: int, dest: Path) -> str:
        """Save the job's output sandbox archive to ``dest``; returns its sha256."""
        return self._download(f"/api/jobs/{job_id}/output", dest)

    # --- sandboxes --------------------------------------------------------------------
    def has_sandbox(self, sha256: str) -> bool:
        try:
            self.request("HEAD", f"/api/sandboxes/{sha256}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def upload_sandbox(
        self,
        archive: Path,
        sha256: str | None = None,
        *,
        job_id: int | None = None,
        skip_if_present: bool = True,
    ) -> str:
        """Upload a tar.gz archive (unless the server has it); returns ``SB:<sha256>``."""
        sha = sha256 or _sha256(archive)
        if job_id is None and skip_if_present and self.has_sandbox(sha):
            return f"SB:{sha}"
        params = {"job_id": job_id} if job_id is not None else None
        with archive.open("rb") as fh:
            self.request(
                "PUT",
                f"/api/sandboxes/{sha}",
                content=fh,
                params=params,
                headers={"Content-Type": "application/gzip"},
            )
        return f"SB:{sha}"

    def download_sandbox(self, sha256: str, dest: Path) -> str:
        return self._download(f"/api/sandboxes/{sha256}", dest)

    def _download(self, path: str, dest: Path) -> str:
        digest = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        try:
            with self.http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise api_error(resp)
                with tmp.open("wb") as out:
                    for chunk in resp.iter_bytes(1 << 16):
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from exc
        tmp.replace(dest)
        return digest.hexdigest()

    # --- pilots and job wrappers --------------------------------------------------------
    def register_pilot(
        self, stamp: str, site: str, ce: str = "", queue: str = ""
    ) -> PilotRegistered:
        return self._post(
            "/api/pilots/register",
            PilotRegistered,
            {"stamp": stamp, "site": site, "ce": ce, "queue": queue},
        )

    def match(self, pilot_id: int, resource: Resource) -> MatchResponse | None:
        resp = self.request(
            "POST", f"/api/pilots/{pilot_id}/match", json=resource.model_dump(mode="json")
        )
        if resp.status_code == 204:
            return None
        return MatchResponse.model_validate_json(resp.content)

    def pilot_finished(
        self, pilot_id: int, ok: bool, reason: str = "", log: str | None = None, jobs_done: int = 0
    ) -> None:
        self.request(
            "POST",
            f"/api/pilots/{pilot_id}/finished",
            json={"ok": ok, "reason": reason, "log": log, "jobs_done": jobs_done},
        )

    def put_pilot_log(self, pilot_id: int, log: str) -> None:
        self.request("PUT", f"/api/pilots/{pilot_id}/log", json={"log": log})

    def pilots(self, status: Sequence[str] = (), limit: int = 100) -> list[PilotInfo]:
        return self._list(
            "GET", "/api/pilots", PilotInfo, params={"status": list(status), "limit": limit}
        )

    def pilot(self, pilot_id: int) -> PilotInfo:
        return self._get(f"/api/pilots/{pilot_id}", PilotInfo)

    def pilot_log(self, pilot_id: int) -> str:
        return self.request("GET", f"/api/pilots/{pilot_id}/log").text

    def heartbeat(self, item: HeartbeatItem) -> ItemResult:
        return self._post(
            f"/api/jobs/{item.job_id}/heartbeat", ItemResult, item.model_dump(mode="json")
        )

    def heartbeats(self, items: Sequence[HeartbeatItem]) -> list[ItemResult]:
        return self._list(
            "POST",
            "/api/jobs/heartbeats",
            ItemResult,
            json=[i.model_dump(mode="json") for i in items],
        )

    def report(self, report: StatusReport) -> ItemResult:
        return self._post(
            f"/api/jobs/{report.job_id}/status",
            ItemResult,
            report.model_dump(mode="json", exclude_none=True),
        )

    def reports(self, reports: Sequence[StatusReport]) -> list[ItemResult]:
        return self._list(
            "POST",
            "/api/jobs/status",
            ItemResult,
            json=[r.model_dump(mode="json", exclude_none=True) for r in reports],
        )

    # --- administration ---------------------------------------------------------------
    def users(self) -> list[UserInfo]:
        return self._list("GET", "/api/admin/users", UserInfo)

    def add_user(self, name: str, groups: Sequence[str], email: str = "") -> None:
        self.request(
            "POST", "/api/admin/users", json={"name": name, "groups": list(groups), "email": email}
        )

    def set_user_enabled(self, name: str, enabled: bool) -> None:
        self.request("POST", f"/api/admin/users/{name}/{'enable' if enabled else 'disable'}")

    def delete_user(self, name: str) -> None:
        self.request("DELETE", f"/api/admin/users/{name}")

    def groups(self) -> list[GroupInfo]:
        return self._list("GET", "/api/admin/groups", GroupInfo)

    def add_group(
        self, name: str, properties: Sequence[str], share: float = 1.0, description: str = ""
    ) -> None:
        self.request(
            "POST",
            "/api/admin/groups",
            json={
                "name": name,
                "properties": list(properties),
                "share": share,
                "description": description,
            },
        )

    def update_group(self, name: str, **changes: Any) -> None:
        self.request("PATCH", f"/api/admin/groups/{name}", json=changes)

    def add_member(self, user: str, group: str) -> None:
        self.request("POST", "/api/admin/members", json={"user": user, "group": group})

    def remove_member(self, user: str, group: str) -> None:
        self.request("POST", "/api/admin/members/remove", json={"user": user, "group": group})

    def issue_token(
        self,
        user: str,
        group: str,
        kind: str = "user",
        days: float | None = None,
        description: str = "",
    ) -> TokenIssued:
        return self._post(
            "/api/admin/tokens",
            TokenIssued,
            {"user": user, "group": group, "kind": kind, "days": days, "description": description},
        )

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        return self._list(
            "GET", "/api/admin/tokens", TokenInfo, params={"user": user} if user else None
        )

    def revoke_token(self, jti: str) -> None:
        self.request("DELETE", f"/api/admin/tokens/{jti}")

    def sites(self) -> list[SiteStatus]:
        return self._list("GET", "/api/sites", SiteStatus)

    def set_site(self, name: str, status: str, reason: str = "") -> None:
        self.request("PUT", f"/api/sites/{name}", json={"status": status, "reason": reason})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
