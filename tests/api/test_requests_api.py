"""Requests routes: create, list, show, retry, cancel; errors as 4xx with a message."""

from __future__ import annotations

from typing import Any

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

    r = rest.client.post(f"/api/requests/{rid}/retry", headers=alice)
    assert r.status_code == 409
    assert r.json()["message"] == f"request {rid} is Waiting: cannot go to Waiting"
    assert rest.client.post(f"/api/requests/{rid}/cancel", headers=bob).status_code == 404
    r = rest.client.post(f"/api/requests/{rid}/cancel", headers=alice)
    assert (r.status_code, r.json()["status"]) == (200, "Canceled")


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
