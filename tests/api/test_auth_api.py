"""Authentication and authorization through the API: tokens, properties, ownership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from ctaprod.core.properties import TokenKind
from ctaprod.logic.auth import ALGORITHM, ISSUER
from tests.api.conftest import Api, Headers, bearer


def _status(rest: Api, headers: Headers | None) -> int:
    return int(rest.client.get("/api/auth/whoami", headers=headers or {}).status_code)


# -- authentication -------------------------------------------------------------------------


def test_whoami(rest: Api, alice: Headers) -> None:
    me = rest.client.get("/api/auth/whoami", headers=alice).json()
    assert me == {
        "user": "alice",
        "group": "ctao_user",
        "kind": "user",
        "properties": ["NormalUser"],
    }
    pilot = rest.client.get("/api/auth/whoami", headers=rest.pilot).json()
    assert (pilot["kind"], pilot["properties"]) == ("pilot", ["GenericPilot"])


def test_missing_or_garbage_token(rest: Api) -> None:
    r = rest.client.get("/api/jobs")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] == "unauthorized"
    assert _status(rest, {"Authorization": "Bearer not-a-token"}) == 401
    assert _status(rest, {"Authorization": "Bearer "}) == 401
    assert _status(rest, {"Authorization": f"Basic {rest.admin_token}"}) == 401
    # Flipping one character of the signature breaks it.
    token = rest.admin_token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert _status(rest, bearer(tampered)) == 401


def test_token_signed_with_another_key(rest: Api) -> None:
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "sub": "admin",
        "grp": "ctao_admin",
        "knd": "user",
        "jti": "x",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    forged = jwt.encode(claims, "another-secret-" + "y" * 40, algorithm=ALGORITHM)
    assert _status(rest, bearer(forged)) == 401
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    assert _status(rest, bearer(unsigned)) == 401


def test_expired_token(rest: Api, alice: Headers) -> None:
    svc = rest.services
    real_clock = svc.ctx.clock
    svc.ctx.clock = lambda: real_clock() - timedelta(hours=2)
    try:
        old = svc.tokens.issue("alice", "ctao_user", TokenKind.USER, timedelta(minutes=5))
    finally:
        svc.ctx.clock = real_clock
    r = rest.client.get("/api/jobs", headers=bearer(old.token))
    assert r.status_code == 401
    assert "expired" in r.json()["message"]
    # A token crafted with the real secret but expired is refused just the same.
    past = datetime.now(UTC) - timedelta(minutes=1)
    crafted = jwt.encode(
        {
            "iss": ISSUER,
            "sub": "alice",
            "grp": "ctao_user",
            "knd": "user",
            "jti": old.jti,
            "exp": int(past.timestamp()),
        },
        svc.tokens.secret,
        algorithm=ALGORITHM,
    )
    assert _status(rest, bearer(crafted)) == 401


def test_crafted_token_needs_a_recorded_jti(rest: Api, alice: Headers) -> None:
    """Knowing the claims is not enough: user tokens must be on record (so revocable)."""
    exp = datetime.now(UTC) + timedelta(hours=1)
    crafted = jwt.encode(
        {
            "iss": ISSUER,
            "sub": "alice",
            "grp": "ctao_user",
            "knd": "user",
            "jti": "f" * 32,
            "exp": int(exp.timestamp()),
        },
        rest.services.tokens.secret,
        algorithm=ALGORITHM,
    )
    assert _status(rest, bearer(crafted)) == 401


def test_revoked_token(rest: Api, alice: Headers) -> None:
    tokens = rest.client.get(
        "/api/admin/tokens", headers=rest.admin, params={"user": "alice"}
    ).json()
    [info] = tokens
    assert info["revoked_at"] is None
    assert _status(rest, alice) == 200
    r = rest.client.delete(f"/api/admin/tokens/{info['jti']}", headers=rest.admin)
    assert r.status_code == 204
    # Revocation through this server takes effect at once (its cache is told).
    assert _status(rest, alice) == 401
    again = rest.client.delete(f"/api/admin/tokens/{info['jti']}", headers=rest.admin)
    assert again.status_code == 409
    assert rest.client.delete("/api/admin/tokens/nope", headers=rest.admin).status_code == 404


def test_revocation_by_another_replica_after_the_cache_expires(rest: Api, alice: Headers) -> None:
    svc = rest.services
    assert svc.tokens.cache_seconds > 0
    assert _status(rest, alice) == 200  # now cached
    [info] = rest.client.get(
        "/api/admin/tokens", headers=rest.admin, params={"user": "alice"}
    ).json()
    # Another API replica revokes the token: this one only sees it in the database.
    with svc.ctx.db.write() as conn:
        svc.ctx.auth.revoke(conn, info["jti"], svc.ctx.clock())
    assert _status(rest, alice) == 200  # still inside the short cache window
    svc.tokens.cache_seconds = 0
    svc.tokens.forget(info["jti"])
    assert _status(rest, alice) == 401


def test_disabled_and_deleted_users(rest: Api, alice: Headers, bob: Headers) -> None:
    assert _status(rest, alice) == 200
    assert rest.client.post("/api/admin/users/alice/disable", headers=rest.admin).status_code == 204
    assert _status(rest, alice) == 401
    assert (
        rest.client.post(
            "/api/admin/tokens", headers=rest.admin, json={"user": "alice", "group": "ctao_user"}
        ).status_code
        == 400
    )
    assert rest.client.post("/api/admin/users/alice/enable", headers=rest.admin).status_code == 204
    assert _status(rest, alice) == 200
    assert rest.client.delete("/api/admin/users/bob", headers=rest.admin).status_code == 204
    assert _status(rest, bob) == 401
    assert rest.client.post("/api/admin/users/bob/disable", headers=rest.admin).status_code == 404


def test_tokens_are_only_issued_to_members(rest: Api, alice: Headers) -> None:
    r = rest.client.post(
        "/api/admin/tokens", headers=rest.admin, json={"user": "alice", "group": "ctao_admin"}
    )
    assert r.status_code == 400
    r = rest.client.post(
        "/api/admin/tokens",
        headers=rest.admin,
        json={"user": "alice", "group": "ctao_user", "kind": "pilot"},
    )
    assert r.status_code == 400
    assert "GenericPilot" in r.json()["message"]
    r = rest.client.post(
        "/api/admin/tokens", headers=rest.admin, json={"user": "nobody", "group": "ctao_user"}
    )
    assert r.status_code == 404


# -- authorization --------------------------------------------------------------------------


def test_normal_user_sees_only_own_jobs(rest: Api, alice: Headers, bob: Headers) -> None:
    mine = rest.submit_one(alice)
    theirs = rest.submit_one(bob)
    assert rest.client.get(f"/api/jobs/{theirs}", headers=alice).status_code == 404
    assert rest.client.get(f"/api/jobs/{theirs}/history", headers=alice).status_code == 404
    assert rest.client.get(f"/api/jobs/{theirs}/output", headers=alice).status_code == 404
    listed = rest.client.get("/api/jobs", headers=alice).json()
    assert [j["job_id"] for j in listed["jobs"]] == [mine]
    assert rest.client.get("/api/jobs", headers=alice, params={"owner": "bob"}).status_code == 404
    found = rest.client.post(
        "/api/jobs/search", headers=alice, json={"job_ids": [mine, theirs]}
    ).json()
    assert [j["job_id"] for j in found["jobs"]] == [mine]
    assert rest.client.post("/api/jobs/count", headers=alice, json={}).json() == 1
    summary = rest.client.post(
        "/api/jobs/summary", headers=alice, json={}, params={"by": "owner"}
    ).json()
    assert summary == {"alice": {"Waiting": 1}}


def test_users_cannot_control_others_jobs(rest: Api, alice: Headers, bob: Headers) -> None:
    theirs = rest.submit_one(bob)
    for action in ("kill", "reschedule", "delete"):
        r = rest.client.post(f"/api/jobs/{action}", headers=alice, json={"job_ids": [theirs]})
        assert r.status_code == 404, action
    assert rest.client.delete(f"/api/jobs/{theirs}", headers=alice).status_code == 404
    assert rest.job(bob, theirs)["status"] == "Waiting"
    jobadmin = rest.user("carol", "ctao_jobadmin", ["NormalUser", "JobAdministrator"])
    assert rest.job(jobadmin, theirs)["owner"] == "bob"
    r = rest.client.post("/api/jobs/kill", headers=jobadmin, json={"job_ids": [theirs]})
    assert r.status_code == 204
    assert rest.job(bob, theirs)["status"] == "Killed"
    history = rest.client.get(f"/api/jobs/{theirs}/history", headers=bob).json()
    assert history[-1]["source"] == "user:carol"


def test_pilot_token_cannot_submit_or_list_but_can_match(rest: Api, alice: Headers) -> None:
    job_id = rest.submit_one(alice)
    r = rest.client.post("/api/jobs", headers=rest.pilot, json={"documents": [{"Executable": "x"}]})
    assert r.status_code == 403
    assert rest.client.get("/api/jobs", headers=rest.pilot).status_code == 403
    assert rest.client.post("/api/jobs/search", headers=rest.pilot, json={}).status_code == 403
    assert rest.client.get(f"/api/jobs/{job_id}", headers=rest.pilot).status_code == 403
    assert (
        rest.client.post(
            "/api/jobs/kill", headers=rest.pilot, json={"job_ids": [job_id]}
        ).status_code
        == 403
    )
    pilot_id, session = rest.register()
    match = rest.match(pilot_id, session)
    assert match["job_id"] == job_id
    # The session token is just as unable to submit.
    assert (
        rest.client.post(
            "/api/jobs", headers=session, json={"documents": [{"Executable": "x"}]}
        ).status_code
        == 403
    )


def test_users_cannot_register_pilots_or_match(rest: Api, alice: Headers) -> None:
    rest.submit_one(alice)
    r = rest.client.post("/api/pilots/register", headers=alice, json={"stamp": "s", "site": "X"})
    assert r.status_code == 403
    pilot_id, _ = rest.register()
    r = rest.client.post(f"/api/pilots/{pilot_id}/match", headers=alice, json={"site": "X"})
    assert r.status_code == 403


def test_job_token_acts_only_on_its_own_job(rest: Api, alice: Headers) -> None:
    job_a, token_a, _, _ = rest.matched_job(alice)
    job_b, token_b, _, _ = rest.matched_job(alice)
    assert rest.heartbeat(token_a, job_a).status_code == 200
    r = rest.heartbeat(token_a, job_b)
    assert r.status_code == 403
    assert rest.report(token_a, job_b, status="Running").status_code == 403
    assert rest.job(alice, job_b)["status"] == "Matched"
    # Its own job is visible to it; nothing else is.
    assert rest.client.get(f"/api/jobs/{job_a}", headers=token_a).status_code == 200
    assert rest.client.get(f"/api/jobs/{job_b}", headers=token_a).status_code == 403
    assert rest.client.get("/api/jobs", headers=token_a).status_code == 403
    assert (
        rest.client.post("/api/jobs/kill", headers=token_a, json={"job_ids": [job_a]}).status_code
        == 403
    )
    assert (
        rest.client.post(
            "/api/jobs", headers=token_b, json={"documents": [{"Executable": "x"}]}
        ).status_code
        == 403
    )
    assert (
        rest.client.post(
            "/api/pilots/register", headers=token_a, json={"stamp": "x", "site": "y"}
        ).status_code
        == 403
    )


def test_old_job_token_is_refused_after_reschedule(rest: Api, alice: Headers) -> None:
    job_id, token, _, _ = rest.matched_job(alice)
    assert rest.report(token, job_id, status="Running").status_code == 200
    r = rest.client.post("/api/jobs/reschedule", headers=alice, json={"job_ids": [job_id]})
    assert r.status_code == 200
    r = rest.heartbeat(token, job_id)
    assert r.status_code == 403
    assert "superseded" in r.json()["message"]
    assert rest.report(token, job_id, status="Done").status_code == 403
    assert rest.job(alice, job_id)["status"] == "Waiting"
    # The next attempt gets a new token that works.
    pilot_id, session = rest.register()
    m = rest.match(pilot_id, session)
    assert (m["job_id"], m["attempt"]) == (job_id, 1)
    assert rest.heartbeat(bearer(m["job_token"]), job_id).status_code == 200
    assert rest.heartbeat(token, job_id).status_code == 403


def test_pilot_session_cannot_touch_another_pilots_job(rest: Api, alice: Headers) -> None:
    job_id, _, pilot_b, session_b = rest.matched_job(alice)
    pilot_a, session_a = rest.register()
    assert rest.heartbeat(session_a, job_id).status_code == 403
    assert rest.report(session_a, job_id, status="Running").status_code == 403
    r = rest.client.post("/api/jobs/heartbeats", headers=session_a, json=[{"job_id": job_id}])
    assert r.status_code == 200
    assert r.json()[0]["status"] == 403
    assert rest.heartbeat(session_b, job_id).status_code == 200
    # Nor can it ask for jobs, finish or upload logs in another pilot's name.
    assert (
        rest.client.post(
            f"/api/pilots/{pilot_b}/match", headers=session_a, json={"site": "X"}
        ).status_code
        == 403
    )
    assert (
        rest.client.post(
            f"/api/pilots/{pilot_b}/finished", headers=session_a, json={"ok": True}
        ).status_code
        == 403
    )
    assert (
        rest.client.put(
            f"/api/pilots/{pilot_b}/log", headers=session_a, json={"log": "x"}
        ).status_code
        == 403
    )
    # The plain pilot token is not bound to a pilot: it cannot report on jobs at all.
    assert rest.heartbeat(rest.pilot, job_id).status_code == 403
    assert pilot_a != pilot_b


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/admin/users", None),
        ("post", "/api/admin/users", {"name": "mallory"}),
        ("post", "/api/admin/users/alice/disable", None),
        ("delete", "/api/admin/users/alice", None),
        ("get", "/api/admin/groups", None),
        ("post", "/api/admin/groups", {"name": "evil", "properties": ["Admin"]}),
        ("patch", "/api/admin/groups/ctao_user", {"properties": ["Admin"]}),
        ("post", "/api/admin/members", {"user": "alice", "group": "ctao_admin"}),
        ("get", "/api/admin/tokens", None),
        ("post", "/api/admin/tokens", {"user": "admin", "group": "ctao_admin"}),
        ("delete", "/api/admin/tokens/abc", None),
    ],
)
def test_admin_routes_need_admin(
    rest: Api, alice: Headers, method: str, path: str, body: object
) -> None:
    operator = rest.user("olga", "ctao_ops", ["NormalUser", "Operator", "JobAdministrator"])
    for headers in (alice, operator, rest.pilot):
        kwargs = {"json": body} if body is not None else {}
        r = rest.client.request(method.upper(), path, headers=headers, **kwargs)
        assert r.status_code == 403, (headers, r.text)
    assert rest.client.get("/api/admin/users", headers=rest.admin).status_code == 200


def test_admin_manages_groups_and_members(rest: Api, alice: Headers) -> None:
    r = rest.client.post(
        "/api/admin/groups", headers=rest.admin, json={"name": "bad", "properties": ["Wizard"]}
    )
    assert r.status_code == 400
    rest.group("ctao_extra", ["NormalUser"], share=2)
    assert (
        rest.client.post(
            "/api/admin/groups", headers=rest.admin, json={"name": "ctao_extra"}
        ).status_code
        == 409
    )
    r = rest.client.post(
        "/api/admin/members", headers=rest.admin, json={"user": "alice", "group": "ctao_extra"}
    )
    assert r.status_code == 201
    users = {u["name"]: u for u in rest.client.get("/api/admin/users", headers=rest.admin).json()}
    assert users["alice"]["groups"] == ["ctao_extra", "ctao_user"]
    token = rest.token("alice", "ctao_extra")
    assert rest.client.get("/api/auth/whoami", headers=bearer(token)).json()["group"] == (
        "ctao_extra"
    )
    # Dropping a property takes effect for tokens already issued.
    r = rest.client.patch(
        "/api/admin/groups/ctao_extra", headers=rest.admin, json={"properties": []}
    )
    assert r.status_code == 204
    r = rest.client.post(
        "/api/jobs", headers=bearer(token), json={"documents": [{"Executable": "x"}]}
    )
    assert r.status_code == 403


def test_site_ban_needs_operator(rest: Api, alice: Headers) -> None:
    change = {"status": "Banned", "reason": "downtime"}
    assert rest.client.put("/api/sites/LCG.X.org", headers=alice, json=change).status_code == 403
    assert (
        rest.client.put("/api/sites/LCG.X.org", headers=rest.pilot, json=change).status_code == 403
    )
    operator = rest.user("olga", "ctao_ops", ["Operator"])
    assert rest.client.put("/api/sites/LCG.X.org", headers=operator, json=change).status_code == 204
    sites = rest.client.get("/api/sites", headers=alice).json()
    assert [(s["name"], s["status"], s["reason"], s["updated_by"]) for s in sites] == [
        ("LCG.X.org", "Banned", "downtime", "olga")
    ]
    assert (
        rest.client.put(
            "/api/sites/LCG.X.org", headers=rest.admin, json={"status": "Active"}
        ).status_code
        == 204
    )
    assert (
        rest.client.put(
            "/api/sites/LCG.Y.org", headers=operator, json={"status": "Banned"}
        ).status_code
        == 400
    )
    assert rest.client.get("/api/sites", headers=rest.pilot).status_code == 403


def test_listing_pilots_needs_a_privileged_property(rest: Api, alice: Headers) -> None:
    pilot_id, _ = rest.register()
    assert rest.client.get("/api/pilots", headers=alice).status_code == 403
    assert rest.client.get(f"/api/pilots/{pilot_id}", headers=alice).status_code == 403
    assert rest.client.get(f"/api/pilots/{pilot_id}/log", headers=alice).status_code == 403
    listed = rest.client.get("/api/pilots", headers=rest.admin).json()
    assert [p["pilot_id"] for p in listed] == [pilot_id]
