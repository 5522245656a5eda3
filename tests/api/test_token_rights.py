"""A token's rights are its user's current rights; the last enabled Admin stays."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ctaprod.core.errors import Unauthorized
from ctaprod.logic.auth import TokenService
from tests.api.conftest import Api, Headers


def _remove(rest: Api, user: str, group: str, headers: Headers | None = None) -> Any:
    return rest.client.post(
        "/api/admin/members/remove",
        headers=headers or rest.admin,
        json={"user": user, "group": group},
    )


def test_an_admin_removed_from_the_admin_group_loses_admin_at_once(rest: Api) -> None:
    ada = rest.user("ada", "ctao_admin")
    assert rest.client.get("/api/admin/users", headers=ada).status_code == 200
    # Another server process, whose cache has seen ada's token as an admin's.
    other = TokenService(rest.services.ctx, rest.services.tokens.secret, cache_seconds=0.5)
    token = ada["Authorization"].split()[1]
    assert "Admin" in other.verify(token).properties
    assert _remove(rest, "ada", "ctao_admin").status_code == 204
    # This process: at once; ada can neither call admin routes nor mint admin tokens.
    assert rest.client.get("/api/admin/users", headers=ada).status_code == 401
    r = rest.client.post(
        "/api/admin/tokens", headers=ada, json={"user": "ada", "group": "ctao_admin"}
    )
    assert r.status_code == 401
    # The other process: within its cache window.
    time.sleep(0.6)
    with pytest.raises(Unauthorized, match="no longer a member"):
        other.verify(token)


def test_property_changes_reach_tokens_already_issued(rest: Api) -> None:
    opal = rest.user("opal", "team_ops", ["NormalUser"])
    r = rest.client.put(
        "/api/sites/LCG.X.org", headers=opal, json={"status": "Banned", "reason": "test"}
    )
    assert r.status_code == 403
    r = rest.client.patch(
        "/api/admin/groups/team_ops",
        headers=rest.admin,
        json={"properties": ["NormalUser", "Operator"]},
    )
    assert r.status_code == 204, r.text
    r = rest.client.put(
        "/api/sites/LCG.X.org", headers=opal, json={"status": "Banned", "reason": "test"}
    )
    assert r.status_code == 204, r.text


def test_a_disabled_user_is_refused_and_enabled_again_works(rest: Api, alice: Headers) -> None:
    assert rest.client.get("/api/jobs", headers=alice).status_code == 200
    assert rest.client.post("/api/admin/users/alice/disable", headers=rest.admin).status_code == 204
    assert rest.client.get("/api/jobs", headers=alice).status_code == 401
    assert rest.client.post("/api/admin/users/alice/enable", headers=rest.admin).status_code == 204
    assert rest.client.get("/api/jobs", headers=alice).status_code == 200


def test_the_last_enabled_admin_stays(rest: Api) -> None:
    # "admin" is the only admin: it cannot go, in any way.
    for call in (
        lambda: rest.client.post("/api/admin/users/admin/disable", headers=rest.admin),
        lambda: rest.client.delete("/api/admin/users/admin", headers=rest.admin),
        lambda: _remove(rest, "admin", "ctao_admin"),
        lambda: rest.client.patch(
            "/api/admin/groups/ctao_admin", headers=rest.admin, json={"properties": ["Operator"]}
        ),
    ):
        r = call()
        assert r.status_code == 409, r.text
        assert "no enabled user with the Admin property" in r.json()["message"]
    # With a second admin, either may go, but not both.
    ada = rest.user("ada", "ctao_admin")
    rest.user("bob", "ctao_user")
    assert rest.client.post("/api/admin/users/admin/disable", headers=ada).status_code == 204
    assert rest.client.post("/api/admin/users/ada/disable", headers=ada).status_code == 409
    # A non-admin can be disabled as before; a disabled admin does not count.
    assert rest.client.post("/api/admin/users/bob/disable", headers=ada).status_code == 204
    assert _remove(rest, "ada", "ctao_admin", ada).status_code == 409


def test_two_admins_disabling_each_other_at_once_leave_one(rest: Api) -> None:
    ada = rest.user("ada", "ctao_admin")
    barrier = threading.Barrier(2)
    codes: dict[str, int] = {}

    def disable(target: str, headers: Headers) -> None:
        barrier.wait()
        codes[target] = rest.client.post(
            f"/api/admin/users/{target}/disable", headers=headers
        ).status_code

    threads = [
        threading.Thread(target=disable, args=("admin", ada)),
        threading.Thread(target=disable, args=("ada", rest.admin)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes.values()) in ([204, 401], [204, 409]), codes
    with rest.services.ctx.db.read() as conn:
        enabled = {r["name"] for r in rest.services.ctx.auth.users(conn) if r["enabled"]}
    assert len(enabled & {"admin", "ada"}) == 1
