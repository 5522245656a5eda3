"""Catalog routes through the HTTP API: status codes, bodies, streaming, and the client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.errors import ApiError
from ctaprod.client.http import Client
from ctaprod.core.catalog import DirInfo, FileInfo, FileRegistration, ReplicaRef
from ctaprod.core.settings import Settings
from tests.api.conftest import Api, Headers
from tests.dm_helpers import make_settings, posix_se

SE = "DISK-A"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path, storage_elements={SE: posix_se(tmp_path / "a")})


def regs(*lfns: str, **kw: Any) -> list[dict[str, Any]]:
    return [{"lfn": lfn, "size": 3, "checksum": "abc", **kw} for lfn in lfns]


def register(rest: Api, who: Headers, body: Any, expect: int = 201, verify: bool = False) -> Any:
    r = rest.client.post(
        "/api/catalog/files", headers=who, json=body, params={"verify": str(verify).lower()}
    )
    assert r.status_code == expect, r.text
    return r.json()


def test_register_lookup_stat_and_errors(rest: Api, alice: Headers) -> None:
    ids = register(rest, alice, regs("/vo/a/1", "/vo/a/2", se=SE))
    assert len(ids) == 2
    r = rest.client.post(
        "/api/catalog/files/lookup", headers=alice, json={"lfns": ["/vo/a/1", "/vo/a/3"]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [f["lfn"] for f in body["files"]] == ["/vo/a/1"]
    assert body["files"][0]["replicas"] == [SE]
    assert body["files"][0]["checksum"] == "00000abc"
    assert body["missing"] == ["/vo/a/3"]
    r = rest.client.get("/api/catalog/stat", headers=alice, params={"path": "/vo/a"})
    assert r.json()["kind"] == "dir"
    assert r.json()["files"] == 2
    # Errors: JSON bodies naming what is wrong, never a 500.
    bad = register(rest, alice, regs("/vo/a/../x"), expect=400)
    assert bad["error"] == "invalid_input"
    assert "/vo/a/../x" in bad["message"]
    assert register(rest, alice, regs("/vo/a/1", size=4), expect=409)["error"] == "conflict"
    assert "NOPE" in register(rest, alice, regs("/vo/b", se="NOPE"), expect=404)["message"]
    r = rest.client.get("/api/catalog/stat", headers=alice, params={"path": "/vo/zz"})
    assert r.status_code == 404
    r = rest.client.get("/api/catalog/stat", headers=alice, params={"path": "vo"})
    assert r.status_code == 400
    r = rest.client.post("/api/catalog/files/lookup", headers=alice, json={"lfns": ["//x"]})
    assert r.status_code == 400
    r = rest.client.post("/api/catalog/dirs", headers=alice, json={"path": "/vo/a b"})
    assert r.status_code == 400
    r = rest.client.get("/api/catalog/ancestors", headers=alice, params={"lfn": "/vo/../a"})
    assert r.status_code == 400
    r = rest.client.get(
        "/api/catalog/ancestors", headers=alice, params={"lfn": "/vo/a/1", "depth": 0}
    )
    assert r.status_code == 422
    r = rest.client.post(
        "/api/catalog/replicas", headers=alice, json=[{"lfn": "/vo/a/1/", "se": SE}]
    )
    assert r.status_code == 400
    rest.services.ctx.settings.data.max_lfns_per_call = 2
    assert register(rest, alice, regs("/t/1", "/t/2", "/t/3"), expect=413)["error"] == "too_large"


def test_permissions_over_http(rest: Api, alice: Headers) -> None:
    carol = rest.user("carol", "other_group")
    pm = rest.user("pm", "ctao_prod", properties=("ProductionManagement",))
    r = rest.client.post("/api/catalog/dirs", headers=alice, json={"path": "/vo/alice"})
    assert r.status_code == 201
    assert r.json()["owner"] == "alice"
    body = register(rest, carol, regs("/vo/alice/f"), expect=403)
    assert body["error"] == "forbidden"
    assert "/vo/alice" in body["message"]
    register(rest, pm, regs("/vo/alice/f"))
    r = rest.client.post("/api/catalog/files/remove", headers=carol, json={"lfns": ["/vo/alice/f"]})
    assert r.status_code == 403
    r = rest.client.post("/api/catalog/files/remove", headers=alice, json={"lfns": ["/vo/alice/f"]})
    assert r.json() == {"count": 1}
    r = rest.client.post("/api/catalog/dirs", headers=rest.pilot, json={"path": "/p"})
    assert r.status_code == 403


def test_streamed_and_paged_listing(rest: Api, alice: Headers) -> None:
    names = [f"f{i:04d}" for i in range(120)]
    register(rest, alice, regs(*(f"/big/{n}" for n in names)))
    rest.client.post("/api/catalog/dirs", headers=alice, json={"path": "/big/sub"})
    with rest.client.stream("GET", "/api/catalog/dir", headers=alice, params={"path": "/big"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [e["name"] for e in lines] == ["sub", *names]
    assert lines[0]["kind"] == "dir"
    assert lines[1]["size"] == 3
    assert lines[1]["created"].endswith("+00:00")
    params = {"path": "/big", "long": "false"}
    with rest.client.stream("GET", "/api/catalog/dir", headers=alice, params=params) as r:
        plain = [json.loads(line) for line in r.iter_lines() if line]
    assert plain == [{"kind": "dir", "name": "sub"}] + [{"kind": "file", "name": n} for n in names]
    got, cursor = [], None
    while True:
        params: dict[str, Any] = {"path": "/big", "limit": 50}
        if cursor:
            params["cursor"] = cursor
        page = rest.client.get("/api/catalog/dir/page", headers=alice, params=params).json()
        got += [e["name"] for e in page["entries"]]
        if not (cursor := page["next_cursor"]):
            break
    assert got == ["sub", *names]
    r = rest.client.get("/api/catalog/dir", headers=alice, params={"path": "/nothing"})
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    r = rest.client.get(
        "/api/catalog/dir/page", headers=alice, params={"path": "/big", "cursor": "x"}
    )
    assert r.status_code == 400


def test_client_methods(live_server: Any, tmp_path: Path) -> None:
    data = b"payload"
    ctx = live_server.services.ctx
    import io
    import zlib

    ctx.storage(SE).put("/c/raw", io.BytesIO(data))
    checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    with Client(live_server.url, live_server.admin_token) as cli:
        seen: list[int] = []
        raw = FileRegistration(lfn="/c/raw", size=len(data), checksum=checksum, se=SE)
        out = [
            FileRegistration(lfn=f"/c/out/{i}", size=1, checksum="1", parents=["/c/raw"])
            for i in range(5)
        ]
        assert len(cli.register_files([raw])) == 1  # verified on the SE (settings default)
        ids = cli.register_files(out, seen.append, verify=False, batch=2)
        assert len(ids) == 5
        assert seen == [2, 2, 1]
        with pytest.raises(ApiError) as err:
            cli.register_files([raw.model_copy(update={"size": 8})])
        assert err.value.status == 409
        assert set(cli.files(["/c/raw", "/c/none"])) == {"/c/raw"}
        assert isinstance(cli.stat("/c/raw"), FileInfo)
        assert isinstance(cli.mkdir("/c/empty"), DirInfo)
        assert isinstance(cli.stat("/c"), DirInfo)
        assert [e.name for e in cli.listdir("/c")] == ["empty", "out", "raw"]
        plain = list(cli.listdir("/c", long=False))
        assert [(e.kind, e.name, e.owner) for e in plain] == [
            ("dir", "empty", None),
            ("dir", "out", None),
            ("file", "raw", None),
        ]
        with pytest.raises(ApiError) as err:
            list(cli.listdir("/c/none"))
        assert err.value.status == 404
        assert [r.lfn for r in cli.descendants("/c/raw")] == [f"/c/out/{i}" for i in range(5)]
        assert [r.lfn for r in cli.ancestors("/c/out/0", depth=3)] == ["/c/raw"]
        ref = ReplicaRef(lfn="/c/out/0", se=SE)
        assert cli.add_replicas([ref], verify=False) == 1
        assert cli.remove_replica_entries([ref]) == 1
        assert cli.remove_file_entries(["/c/out/0", "/c/out/1"]) == 2
