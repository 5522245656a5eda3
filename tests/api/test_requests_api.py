"""Requests routes: create, list, show, retry, cancel; errors as 4xx with a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from ctaprod.db.tables import requests
from ctaprod.logic.request_claims import claim_due
from tests.api.conftest import Api, Headers

REMOVE = {"type": "RemoveFile", "files": [{"lfn": "/vo/user/a"}]}


def create(rest: Api, headers: Headers, expect: int = 201, **body: Any) -> Any:
    r = rest.client.post("/api/requests", headers=headers, json={"name": "t", **body})
    assert r.status_code == expect, r.text
    return r.json()["request_id"] if expect == 201 else r.json()


def test_create_show_list_cancel(rest: Api, alice: Headers, bob: Headers) -> None:
    rid = create(rest, alice, operations=[REMOVE])
    r = rest.client.get(f"/api/requests/{rid}", headers=alice)
    assert r.status_code == 200, r.text
    info = r.json()
    assert (info["status"], info["owner"]) == ("Waiting", "alice")
    assert info["operations"][0]["files"][0]["lfn"] == "/vo/user/a"

    page = rest.client.get("/api/requests", headers=alice, params={"status": "Waiting"}).json()
    assert [x["request_id"] for x in page["requests"]] == [rid]
    assert rest.client.get("/api/requests", headers=bob).json()["requests"] == []
    assert rest.client.get(f"/api/requests/{rid}", headers=bob).status_code == 404
    assert rest.client.get("/api/requests", headers=rest.admin).json()["requests"][0]["owner"] == (
        "alice"
    )

    r = rest.client.post(f"/api/requests/{rid}/retry", headers=alice)  # due now: it is
    assert (r.status_code, r.json()["status"]) == (200, "Waiting")
    assert rest.client.post(f"/api/requests/{rid}/cancel", headers=bob).status_code == 404
    r = rest.client.post(f"/api/requests/{rid}/cancel", headers=alice)
    assert (r.status_code, r.json()["status"]) == (200, "Canceled")
    r = rest.client.post(f"/api/requests/{rid}/retry", headers=alice)
    assert r.status_code == 409
    assert r.json()["message"] == (
        f"request {rid} is Canceled: cannot go to Waiting (final state: nothing to retry)"
    )


def test_retry_of_a_request_held_by_a_live_executor_is_refused_with_the_reason(
    rest: Api, alice: Headers
) -> None:
    """Before leases, this retry answered 200 and did nothing."""
    rid = create(rest, alice, operations=[REMOVE])
    ctx = rest.services.ctx
    lease = datetime.now(UTC) + timedelta(seconds=45)
    with ctx.db.write() as conn:
        assert claim_due(ctx, conn, datetime.now(UTC), 10, "w#1", lease_until=lease)
    r = rest.client.post(f"/api/requests/{rid}/retry", headers=alice)
    assert r.status_code == 409, r.text
    assert "executor w#1 holds it, its lease runs until" in r.json()["message"]
    assert rest.client.get(f"/api/requests/{rid}", headers=alice).json()["status"] == "Assigned"
    # The executor died: once its lease has passed, retry puts the request back at once.
    with ctx.db.write() as conn:
        conn.execute(update(requests).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    r = rest.client.post(f"/api/requests/{rid}/retry", headers=alice)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["assigned_by"]) == ("Waiting", "")


def test_bad_input_is_a_400_naming_the_problem(rest: Api, alice: Headers) -> None:
    cases = [
        ([], "at least one operation"),
        ([{"type": "Beam", "files": [{"lfn": "/vo/a"}]}], "unknown type 'Beam'"),
        ([{"type": "RemoveReplica", "files": [{"lfn": "/vo/a"}]}], "missing argument se"),
        ([{"type": "RemoveFile", "files": [{"lfn": "/vo//a"}]}], "invalid LFN '/vo//a'"),
    ]
    for ops, message in cases:
        body = create(rest, alice, expect=400, operations=ops)
        assert message in body["message"], body
    assert rest.client.get("/api/requests", headers=rest.admin).json()["requests"] == []
    assert rest.client.get("/api/requests/77", headers=alice).status_code == 404


def test_job_and_pilot_tokens(rest: Api, alice: Headers) -> None:
    job_id, job, _, _ = rest.matched_job(alice)
    set_done = {"type": "SetJobStatus", "arguments": {"status": "Done"}}
    rid = create(rest, job, operations=[set_done], job_id=job_id + 1000)
    assert rest.client.get(f"/api/requests/{rid}", headers=job).json()["job_id"] == job_id
    page = rest.client.get("/api/requests", headers=alice, params={"job_id": job_id}).json()
    assert [x["request_id"] for x in page["requests"]] == [rid]
    r = rest.client.post("/api/requests", headers=rest.pilot, json={"operations": [REMOVE]})
    assert r.status_code == 403
