"""Helpers for the API tests: an in-process client and small verbs over the REST API."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette wants httpx2 for its test client; the httpx it falls back on works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


Headers = dict[str, str]


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """The REST API of one test, driven through FastAPI's TestClient."""

    def __init__(
        self, client: TestClient, admin_token: str, pilot_token: str, services: Any
    ) -> None:
        self.client = client
        self.admin_token = admin_token
        self.pilot_token = pilot_token
        self.admin = bearer(admin_token)
        self.pilot = bearer(pilot_token)
        self.services = services
        self._stamps = 0

    # -- identities ------------------------------------------------------------------------

    def group(self, name: str, properties: Sequence[str], share: float = 1.0) -> None:
        r = self.client.post(
            "/api/admin/groups",
            headers=self.admin,
            json={"name": name, "properties": list(properties), "share": share},
        )
        assert r.status_code == 201, r.text

    def user(
        self, name: str, group: str, properties: Sequence[str] = ("NormalUser",), kind: str = "user"
    ) -> Headers:
        """Create ``group`` (if new) and ``name`` in it; return the headers of a new token."""
        known = {g["name"] for g in self.client.get("/api/admin/groups", headers=self.admin).json()}
        if group not in known:
            self.group(group, properties)
        r = self.client.post(
            "/api/admin/users", headers=self.admin, json={"name": name, "groups": [group]}
        )
        assert r.status_code == 201, r.text
        return bearer(self.token(name, group, kind))

    def token(self, user: str, group: str, kind: str = "user", **extra: Any) -> str:
        r = self.client.post(
            "/api/admin/tokens",
            headers=self.admin,
            json={"user": user, "group": group, "kind": kind, **extra},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self,
        headers: Headers,
        text: str | None = None,
        fmt: str = "auto",
        documents: list[dict[str, Any]] | None = None,
        expect: int = 201,
    ) -> Any:
        body: dict[str, Any] = {"format": fmt}
        if text is not None:
            body["text"] = text
        if documents is not None:
            body["documents"] = documents
        r = self.client.post("/api/jobs", headers=headers, json=body)
        assert r.status_code == expect, r.text
        return r.json()["job_ids"] if expect == 201 else r.json()

    def submit_one(self, headers: Headers, **fields: Any) -> int:
        [job_id] = self.submit(headers, documents=[{"Executable": "/bin/true", **fields}])
        return int(job_id)

    def job(self, headers: Headers, job_id: int) -> Any:
        r = self.client.get(f"/api/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def count_jobs(self) -> int:
        from sqlalchemy import func, select

        from ctaprod.db.tables import jobs

        with self.services.ctx.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())

    # -- pilots ----------------------------------------------------------------------------

    def register(self, site: str = "LCG.Test.org", token: str | None = None) -> tuple[int, Headers]:
        """Register a pilot: (pilot_id, headers of its session token)."""
        self._stamps += 1
        r = self.client.post(
            "/api/pilots/register",
            headers=bearer(token or self.pilot_token),
            json={"stamp": f"api-{self._stamps}", "site": site, "ce": "ce", "queue": "q"},
        )
        assert r.status_code == 200, r.text
        return int(r.json()["pilot_id"]), bearer(r.json()["session_token"])

    def match(
        self, pilot_id: int, headers: Headers, site: str = "LCG.Test.org", **resource: Any
    ) -> Any:
        """The match response (dict), or None when no job is waiting."""
        r = self.client.post(
            f"/api/pilots/{pilot_id}/match", headers=headers, json={"site": site, **resource}
        )
        if r.status_code == 204:
            return None
        assert r.status_code == 200, r.text
        self.services.matcher.invalidate()
        return r.json()

    def matched_job(self, owner: Headers, **fields: Any) -> tuple[int, Headers, int, Headers]:
        """Submit and match one job: (job_id, job-token headers, pilot_id, pilot headers)."""
        job_id = self.submit_one(owner, **fields)
        pilot_id, pilot = self.register()
        m = self.match(pilot_id, pilot)
        assert m is not None
        assert m["job_id"] == job_id
        return job_id, bearer(m["job_token"]), pilot_id, pilot

    def report(self, headers: Headers, job_id: int, **fields: Any) -> Any:
        return self.client.post(
            f"/api/jobs/{job_id}/status", headers=headers, json={"job_id": job_id, **fields}
        )

    def heartbeat(self, headers: Headers, job_id: int, **fields: Any) -> Any:
        return self.client.post(
            f"/api/jobs/{job_id}/heartbeat", headers=headers, json={"job_id": job_id, **fields}
        )


@pytest.fixture
def client(api: Any) -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def rest(client: TestClient, tokens: tuple[str, str], services: Any) -> Api:
    admin, pilot = tokens
    return Api(client, admin, pilot, services)


@pytest.fixture
def alice(rest: Api) -> Headers:
    """Headers of a NormalUser called alice (group ctao_user)."""
    return rest.user("alice", "ctao_user")


@pytest.fixture
def bob(rest: Api) -> Headers:
    return rest.user("bob", "ctao_user")
