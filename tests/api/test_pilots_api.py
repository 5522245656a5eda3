"""Routes used by pilots and job wrappers: register, match, heartbeats, status, pilot end."""

from __future__ import annotations

from ctaprod.core.job_states import JobStatus
from ctaprod.logic.job_status import Step, transition_jobs
from tests.api.conftest import Api, Headers


def test_register_and_match(rest: Api, alice: Headers) -> None:
    pilot_id, session = rest.register("LCG.Reg.org")
    assert rest.match(pilot_id, session, "LCG.Reg.org") is None  # 204: nothing waits
    job_id = rest.submit_one(alice, Arguments="--job %j", JobName="n%j", CPUTime=600)
    m = rest.match(pilot_id, session, "LCG.Reg.org", cpu_time_left=3600)
    assert m["job_id"] == job_id
    assert (m["owner"], m["owner_group"], m["attempt"]) == ("alice", "ctao_user", 0)
    assert m["description"]["Arguments"] == f"--job {job_id}"
    assert m["description"]["JobName"] == f"n{job_id}"
    assert m["heartbeat_interval"] > 0
    assert m["input_sandboxes"] == []
    job = rest.job(alice, job_id)
    assert (job["status"], job["site"], job["pilot_id"]) == ("Matched", "LCG.Reg.org", pilot_id)
    info = rest.client.get(f"/api/pilots/{pilot_id}", headers=rest.admin).json()
    assert (info["status"], info["site"], info["ce"], info["queue"]) == (
        "Running",
        "LCG.Reg.org",
        "ce",
        "q",
    )
    assert rest.match(pilot_id, session, "LCG.Reg.org") is None


def test_match_validates_the_resource(rest: Api) -> None:
    pilot_id, session = rest.register()
    r = rest.client.post(
        f"/api/pilots/{pilot_id}/match", headers=session, json={"site": "", "processors": 0}
    )
    assert r.status_code == 422
    # Matching needs the session token of the pilot that matches.
    for headers in (rest.pilot, session):
        r = rest.client.post("/api/pilots/99999/match", headers=headers, json={"site": "X"})
        assert r.status_code == 403, r.text


def test_wrapper_lifecycle_through_the_api(rest: Api, alice: Headers) -> None:
    job_id, job, pilot_id, _ = rest.matched_job(alice)
    r = rest.report(job, job_id, status="Running", application_status="Starting")
    assert r.status_code == 200
    assert r.json() == {"job_id": job_id, "commands": [], "error": None, "status": 200}
    r = rest.heartbeat(job, job_id, cpu_seconds=5.5, wall_seconds=7, peak_rss_bytes=1000)
    assert r.status_code == 200
    assert r.json()["commands"] == []
    rest.report(
        job, job_id, application_status="Processing", parameters={"HostName": "wn1.example.org"}
    )
    rest.report(job, job_id, status="Done", minor_status="Execution Complete", exit_code=0)
    detail = rest.job(alice, job_id)
    assert (detail["status"], detail["minor_status"], detail["application_status"]) == (
        "Done",
        "Execution Complete",
        "Processing",
    )
    assert (detail["cpu_seconds"], detail["wall_seconds"], detail["exit_code"]) == (5.5, 7.0, 0)
    assert detail["parameters"] == {"HostName": "wn1.example.org"}
    history = rest.client.get(f"/api/jobs/{job_id}/history", headers=alice).json()
    assert [(h["status"], h["application_status"], h["source"]) for h in history[-4:]] == [
        ("Matched", "", f"Matcher:{pilot_id}"),
        ("Running", "Starting", "JobWrapper"),
        ("Running", "Processing", "JobWrapper"),
        ("Done", "", "JobWrapper"),
    ]


def test_done_on_a_killed_job_is_refused_naming_the_state(rest: Api, alice: Headers) -> None:
    job_id, job, _, session = rest.matched_job(alice)
    rest.report(job, job_id, status="Running")
    assert (
        rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [job_id]}).status_code
        == 204
    )
    # The job's token is void (403): the wrapper stops its payload as on a Kill command.
    beat = rest.heartbeat(job, job_id)
    assert beat.status_code == 403
    assert "being killed" in beat.json()["message"]
    assert rest.report(job, job_id, status="Done").status_code == 403
    # The pilot's session hears Kill, and the state machine's verdict naming the state.
    beat = rest.heartbeat(session, job_id)
    assert beat.status_code == 200
    assert beat.json()["commands"] == ["Kill"]
    r = rest.report(session, job_id, status="Done")
    assert r.status_code == 409
    body = r.json()
    assert f"job {job_id} is Killed: cannot go to Done" in body["message"]
    assert body["detail"]["commands"] == ["Kill"]
    assert rest.job(alice, job_id)["status"] == "Killed"


def test_illegal_wrapper_transition_is_refused(rest: Api, alice: Headers) -> None:
    job_id, job, _, session = rest.matched_job(alice)
    rest.report(job, job_id, status="Running")
    r = rest.report(job, job_id, status="Waiting")  # not a wrapper's to set
    assert r.status_code == 403
    rest.report(job, job_id, status="Failed", exit_code=2)
    r = rest.report(job, job_id, status="Completing")
    assert r.status_code == 403  # the job has ended: its token is void
    assert "is Failed" in r.json()["message"]
    r = rest.report(session, job_id, status="Completing")
    assert r.status_code == 409
    assert "is Failed" in r.json()["message"]


def test_heartbeat_resumes_a_stalled_job(rest: Api, alice: Headers) -> None:
    job_id, job, _, _ = rest.matched_job(alice)
    rest.report(job, job_id, status="Running")
    ctx = rest.services.ctx
    with ctx.db.write() as conn:
        transition_jobs(
            ctx, conn, [job_id], lambda s: [Step(JobStatus.STALLED, "No beat")], "StalledJobAgent"
        )
    assert rest.job(alice, job_id)["status"] == "Stalled"
    assert rest.heartbeat(job, job_id, cpu_seconds=1).json()["commands"] == []
    assert rest.job(alice, job_id)["status"] == "Running"


def test_bulk_heartbeats_and_reports(rest: Api, alice: Headers) -> None:
    ids = rest.submit(alice, documents=[{"Executable": "x"}] * 3)
    pilot_id, session = rest.register()
    assert [rest.match(pilot_id, session)["job_id"] for _ in ids] == ids
    rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [ids[2]]})
    r = rest.client.post(
        "/api/jobs/status",
        headers=session,
        json=[
            {"job_id": ids[0], "status": "Running"},
            {"job_id": ids[1], "status": "Running"},
            {"job_id": ids[2], "status": "Running"},
            {"job_id": 777_777, "status": "Running"},
        ],
    )
    assert r.status_code == 200
    assert [(x["job_id"], x["status"], x["commands"]) for x in r.json()] == [
        (ids[0], 200, []),
        (ids[1], 200, []),
        (ids[2], 409, ["Kill"]),
        (777_777, 404, []),
    ]
    r = rest.client.post(
        "/api/jobs/heartbeats",
        headers=session,
        json=[{"job_id": j, "cpu_seconds": n} for n, j in enumerate(ids)],
    )
    assert [(x["job_id"], x["status"], x["commands"]) for x in r.json()] == [
        (ids[0], 200, []),
        (ids[1], 200, []),
        (ids[2], 200, ["Kill"]),
    ]
    assert rest.job(alice, ids[1])["cpu_seconds"] == 1.0
    assert rest.client.post("/api/jobs/heartbeats", headers=session, json=[]).status_code == 400
    assert rest.client.post("/api/jobs/status", headers=session, json=[]).status_code == 400


def test_body_and_url_must_agree(rest: Api, alice: Headers) -> None:
    job_id, job, _, _ = rest.matched_job(alice)
    r = rest.client.post(f"/api/jobs/{job_id}/heartbeat", headers=job, json={"job_id": job_id + 1})
    assert r.status_code == 400
    r = rest.client.post(
        f"/api/jobs/{job_id}/status", headers=job, json={"job_id": job_id + 1, "status": "Running"}
    )
    assert r.status_code == 400
    r = rest.heartbeat(job, job_id, cpu_seconds=-1)
    assert r.status_code == 422


def test_heartbeat_for_an_unknown_job(rest: Api) -> None:
    _, session = rest.register()
    assert rest.heartbeat(session, 555_555).status_code == 404


def test_pilot_finishes_and_uploads_its_log(rest: Api) -> None:
    pilot_id, session = rest.register()
    assert (
        rest.client.put(
            f"/api/pilots/{pilot_id}/log", headers=session, json={"log": "line 1\n"}
        ).status_code
        == 204
    )
    r = rest.client.get(f"/api/pilots/{pilot_id}/log", headers=rest.admin)
    assert (r.status_code, r.text) == (200, "line 1\n")
    r = rest.client.post(
        f"/api/pilots/{pilot_id}/finished",
        headers=session,
        json={"ok": True, "reason": "no more jobs", "log": "all\n", "jobs_done": 2},
    )
    assert r.status_code == 204
    info = rest.client.get(f"/api/pilots/{pilot_id}", headers=rest.admin).json()
    assert (info["status"], info["status_reason"], info["jobs_done"]) == ("Done", "no more jobs", 2)
    assert rest.client.get(f"/api/pilots/{pilot_id}/log", headers=rest.admin).text == "all\n"
    again = rest.client.post(
        f"/api/pilots/{pilot_id}/finished", headers=session, json={"ok": False}
    )
    assert again.status_code == 409
    assert f"pilot {pilot_id} is Done" in again.json()["message"]
    # A finished pilot gets no more jobs.
    r = rest.client.post(f"/api/pilots/{pilot_id}/match", headers=session, json={"site": "X"})
    assert r.status_code == 403
    assert rest.client.get("/api/pilots/424242", headers=rest.admin).status_code == 404
    assert rest.client.get("/api/pilots/424242/log", headers=rest.admin).status_code == 404


def test_list_pilots(rest: Api) -> None:
    a, session_a = rest.register("LCG.A.org")
    b, _ = rest.register("LCG.B.org")
    rest.client.post(f"/api/pilots/{a}/finished", headers=session_a, json={"ok": False})

    def ids(**params: object) -> list[int]:
        r = rest.client.get("/api/pilots", headers=rest.admin, params=params)
        assert r.status_code == 200, r.text
        return [p["pilot_id"] for p in r.json()]

    assert ids() == [a, b]
    assert ids(status="Failed") == [a]
    assert ids(status="Running") == [b]
    assert ids(site="LCG.B.org") == [b]
    assert ids(limit=1) == [a]
    assert ids(cursor=a) == [b]


def test_site_ban_stops_matching_at_once(rest: Api, alice: Headers) -> None:
    rest.submit_one(alice)
    pilot_id, session = rest.register("LCG.Ban.org")
    rest.match(pilot_id, session, "LCG.Other.org", cpu_time_left=1)  # warm the snapshot
    assert (
        rest.client.put(
            "/api/sites/LCG.Ban.org",
            headers=rest.admin,
            json={"status": "Banned", "reason": "test"},
        ).status_code
        == 204
    )
    assert rest.match(pilot_id, session, "LCG.Ban.org") is None
    assert (
        rest.client.put(
            "/api/sites/LCG.Ban.org", headers=rest.admin, json={"status": "Active"}
        ).status_code
        == 204
    )
    assert rest.match(pilot_id, session, "LCG.Ban.org") is not None


def test_revoking_the_pilot_token_revokes_its_sessions(rest: Api) -> None:
    issued = rest.client.post(
        "/api/admin/tokens",
        headers=rest.admin,
        json={"user": "pilot", "group": "ctao_pilot", "kind": "pilot"},
    )
    assert issued.status_code == 201
    pilot_id, session = rest.register(token=issued.json()["token"])
    assert rest.match(pilot_id, session) is None
    assert (
        rest.client.delete(
            f"/api/admin/tokens/{issued.json()['jti']}", headers=rest.admin
        ).status_code
        == 204
    )
    r = rest.client.post(f"/api/pilots/{pilot_id}/match", headers=session, json={"site": "X"})
    assert r.status_code == 401
    # Pilots registered with other pilot tokens carry on.
    other_id, other = rest.register()
    assert rest.match(other_id, other) is None
