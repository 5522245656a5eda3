"""``POST /api/data/check``: the consistency report over HTTP, refusals as 4xx/503, the
repair for operators only."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tests.api.conftest import Api, Headers

TOP = "/ctao/user/a/alice/check"
STALE = f"{TOP}/.x.dat~ctaprod-upload-{'e' * 32}"


def se_file(services: Any, lfn: str, se: str = "LOCAL-DISK") -> Path:
    return Path(services.ctx.settings.storage_element(se).base_path) / lfn.lstrip("/")


def check(rest: Api, headers: Headers, **body: Any) -> Any:
    return rest.client.post(
        "/api/data/check", headers=headers, json={"path": TOP, "se": "LOCAL-DISK", **body}
    )


def test_check_over_http(rest: Api, alice: Headers) -> None:
    for name in ("a.dat", "b.dat"):
        r = rest.client.put(
            "/api/data/files", headers=alice, params={"lfn": f"{TOP}/{name}"}, content=b"abc" * 9
        )
        assert r.status_code == 201, r.text
    se_file(rest.services, f"{TOP}/b.dat").write_bytes(b"ABC" + b"abc" * 8)
    stale = se_file(rest.services, STALE)
    stale.write_bytes(b"left over")
    os.utime(stale, (time.time() - 3 * 86_400,) * 2)
    # A whole-SE walk: Operator or Admin only.
    r = check(rest, alice)
    assert r.status_code == 403, r.text
    assert stale.exists()
    ops = rest.user("olga", "ctao_ops", ("NormalUser", "Operator"))
    r = check(rest, ops)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] == ""
    assert body["consistent"] is False
    assert body["stale_uploads"] == {"count": 1, "lfns": [STALE]}
    assert body["checksum_mismatch"]["count"] == 0
    body = check(rest, ops, checksums=True, limit=5).json()
    assert body["checksum_mismatch"] == {"count": 1, "lfns": [f"{TOP}/b.dat"]}
    assert (body["storage_files"], body["catalog_replicas"], body["limit"]) == (3, 2, 5)

    assert check(rest, alice, remove_stale_uploads=True).status_code == 403
    assert stale.exists()
    body = check(rest, ops, remove_stale_uploads=True).json()
    assert body["removed_stale_uploads"] == {"count": 1, "lfns": [STALE]}
    assert not stale.exists()
    assert se_file(rest.services, f"{TOP}/b.dat").exists()


def test_check_refusals(rest: Api, alice: Headers) -> None:
    alice = rest.admin  # the refusals of a caller who may check
    assert check(rest, alice, path="not/absolute").status_code == 400
    assert check(rest, alice, path="/a/../b").status_code == 400
    assert check(rest, alice, limit=-1).status_code in (400, 422)
    r = check(rest, alice, se="NO-SUCH-SE")
    assert r.status_code == 404
    assert "NO-SUCH-SE" in r.text
    r = rest.client.post(
        "/api/storage/elements/LOCAL-DISK/ban",
        headers=rest.admin,
        json={"access": "read", "reason": "disk broken"},
    )
    assert r.status_code == 200, r.text
    r = check(rest, alice)
    assert r.status_code == 503  # like every read of a banned SE
    assert "disk broken" in r.text
    assert rest.client.post("/api/data/check", json={"path": TOP, "se": "X"}).status_code == 401
