"""A job token acts for one live attempt of one job, on that job's objects only, with its
owner's current rights: every route family that accepts job tokens refuses a token whose job
is Done, Killed or rescheduled, whose owner is disabled, or that aims at another job."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.archive import make_archive
from tests.api.conftest import Api, Headers

Action = Callable[[Api, Headers, int], Any]


def _sandbox(tmp: Path = Path(tempfile.gettempdir())) -> tuple[str, bytes]:
    src = tmp / f"ctaprod-scope-{os.getpid()}.txt"
    src.write_text("output")
    dest = src.with_suffix(".tar.gz")
    sha = make_archive([src], dest)
    data = dest.read_bytes()
    src.unlink()
    dest.unlink()
    return sha, data


def _catalog_write(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.client.post(
        "/api/catalog/dirs", headers=job, json={"path": f"/home/alice/j{job_id}"}
    )


def _metadata_write(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.client.post(
        "/api/metadata/values", headers=job, json={"path": "/home/alice", "values": {"x": 1}}
    )


def _data_read(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.client.get("/api/data/files", headers=job, params={"lfn": "/ctao/none"})


_REQUEST = {
    "name": "outputs",
    "operations": [
        {
            "type": "RegisterFile",
            "files": [{"lfn": "/home/alice/x.dat", "size": 1, "checksum": "00000001"}],
            "arguments": {"se": "LOCAL-DISK"},
        }
    ],
}


def _request(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.client.post("/api/requests", headers=job, json=_REQUEST)


def _requests_list(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.client.get("/api/requests", headers=job)


def _sandbox_upload(rest: Api, job: Headers, job_id: int) -> Any:
    sha, data = _sandbox()
    return rest.client.put(
        f"/api/sandboxes/{sha}", headers=job, params={"job_id": job_id}, content=data
    )


def _heartbeat(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.heartbeat(job, job_id)


def _status(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.report(job, job_id, minor_status="still here")


def _job_read(rest: Api, job: Headers, job_id: int) -> Any:
    return rest.client.get(f"/api/jobs/{job_id}", headers=job)


FAMILIES: dict[str, Action] = {
    "catalog": _catalog_write,
    "metadata": _metadata_write,
    "data": _data_read,
    "request": _request,
    "requests-list": _requests_list,
    "sandbox": _sandbox_upload,
    "heartbeat": _heartbeat,
    "status": _status,
    "job": _job_read,
}


def _ended(rest: Api, alice: Headers, how: str) -> tuple[int, Headers]:
    """A job matched, started, then ended ``how``; (job id, its old token's headers)."""
    job_id, job, _, _ = rest.matched_job(alice)
    assert rest.report(job, job_id, status="Running").status_code == 200
    if how == "done":
        assert rest.report(job, job_id, status="Done").status_code == 200
    elif how == "killed":
        r = rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [job_id]})
        assert r.status_code in (200, 204), r.text
    elif how == "rescheduled":
        r = rest.client.post("/api/jobs/reschedule", headers=alice, json={"job_ids": [job_id]})
        assert r.status_code == 200, r.text
    elif how == "owner-disabled":
        r = rest.client.post("/api/admin/users/alice/disable", headers=rest.admin)
        assert r.status_code == 204, r.text
    return job_id, job


@pytest.mark.parametrize("how", ["done", "killed", "rescheduled", "owner-disabled"])
def test_a_dead_job_token_is_refused_by_every_family(rest: Api, alice: Headers, how: str) -> None:
    job_id, job = _ended(rest, alice, how)
    for name, action in FAMILIES.items():
        r = action(rest, job, job_id)
        assert r.status_code in (401, 403), (name, r.status_code, r.text)
    if how != "owner-disabled":
        assert rest.job(alice, job_id)["status"] in ("Done", "Killed", "Waiting")


def test_a_live_job_token_works_and_reaches_its_own_job_only(rest: Api, alice: Headers) -> None:
    job_a, token_a, _, _ = rest.matched_job(alice)
    job_b, token_b, _, _ = rest.matched_job(alice)
    assert rest.report(token_a, job_a, status="Running").status_code == 200
    # Its own objects: fine.
    assert _catalog_write(rest, token_a, job_a).status_code == 201
    assert _sandbox_upload(rest, token_a, job_a).status_code == 201
    assert _job_read(rest, token_a, job_a).status_code == 200
    assert _heartbeat(rest, token_a, job_a).status_code == 200
    # Another job's: refused.
    assert _heartbeat(rest, token_a, job_b).status_code == 403
    assert _status(rest, token_a, job_b).status_code == 403
    assert _job_read(rest, token_a, job_b).status_code == 403
    assert _sandbox_upload(rest, token_a, job_b).status_code == 403
    assert rest.client.get(f"/api/jobs/{job_b}/output", headers=token_a).status_code in (403, 404)
    # A request is always its own job's, whatever the body says; others' stay invisible.
    r = rest.client.post("/api/requests", headers=token_b, json={**_REQUEST, "job_id": job_a})
    assert r.status_code == 201, r.text
    request_b = r.json()["request_id"]
    shown = rest.client.get(f"/api/requests/{request_b}", headers=alice).json()
    assert shown["job_id"] == job_b
    assert rest.client.get(f"/api/requests/{request_b}", headers=token_a).status_code == 404


def test_a_completed_job_may_still_leave_its_request_and_final_status(
    rest: Api, alice: Headers
) -> None:
    """The failover path: the wrapper reports Completed, then creates the request finishing
    the outputs, and reports Failed if that is refused. Payload actions are over."""
    job_id, job, _, _ = rest.matched_job(alice)
    assert rest.report(job, job_id, status="Running").status_code == 200
    assert rest.report(job, job_id, status="Completed").status_code == 200
    assert _catalog_write(rest, job, job_id).status_code == 403
    assert _sandbox_upload(rest, job, job_id).status_code == 403
    assert _data_read(rest, job, job_id).status_code == 403
    r = rest.client.post("/api/requests", headers=job, json=_REQUEST)
    assert r.status_code == 201, r.text
    assert rest.report(job, job_id, status="Failed", minor_status="x").status_code == 200
    # Failed is final: nothing more.
    assert _request(rest, job, job_id).status_code == 403


def test_removal_from_the_group_voids_the_owners_job_tokens(rest: Api) -> None:
    carol = rest.user("carol", "team_c")
    job_id, job, _, _ = rest.matched_job(carol)
    assert rest.report(job, job_id, status="Running").status_code == 200
    r = rest.client.post(
        "/api/admin/members/remove", headers=rest.admin, json={"user": "carol", "group": "team_c"}
    )
    assert r.status_code == 204, r.text
    assert _heartbeat(rest, job, job_id).status_code == 403
    assert rest.client.get("/api/jobs", headers=carol).status_code == 401


def test_a_pilot_session_reaches_its_own_pilots_jobs_only(rest: Api, alice: Headers) -> None:
    job_id, _, _, session = rest.matched_job(alice)
    _other_id, other = rest.register()
    assert rest.heartbeat(other, job_id).status_code == 403
    assert rest.heartbeat(session, job_id).status_code == 200
