"""Metadata routes over HTTP: fields, values, streamed/paged/counted queries, datasets,
and the status codes of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Api, Headers
from tests.db.test_metadata_tree import Tree

BASE = "/ctao/MC/PROD6"


@pytest.fixture
def tree(rest: Api) -> Tree:
    for name, ftype in (("site", "string"), ("particle", "string"), ("runNumber", "int")):
        r = rest.client.post(
            "/api/metadata/fields", headers=rest.admin, json={"name": name, "type": ftype}
        )
        assert r.status_code == 201, r.text
    tree = Tree(owner="alice")
    with rest.services.ctx.db.write() as conn:
        for site in ("Paranal", "LaPalma"):
            tree.add_files(conn, [f"{BASE}/{site}/gamma/f{i}" for i in range(4)])
    for site in ("Paranal", "LaPalma"):
        set_meta(rest, rest.admin, f"{BASE}/{site}", {"site": site, "particle": "gamma"})
        for i in range(4):
            set_meta(rest, rest.admin, f"{BASE}/{site}/gamma/f{i}", {"runNumber": i})
    return tree


def set_meta(
    rest: Api, headers: Headers, path: str, values: dict[str, Any], code: int = 200
) -> Any:
    r = rest.client.post(
        "/api/metadata/values", headers=headers, json={"path": path, "values": values}
    )
    assert r.status_code == code, r.text
    return r.json()


def test_fields_and_values(rest: Api, tree: Tree, alice: Headers, bob: Headers) -> None:
    r = rest.client.get("/api/metadata/fields", headers=alice)
    # prod_step_id: declared by the server for productions (server.extensions).
    assert [f["name"] for f in r.json()] == ["particle", "prod_step_id", "runNumber", "site"]
    r = rest.client.post("/api/metadata/fields", headers=alice, json={"name": "x", "type": "int"})
    assert r.status_code == 403
    r = rest.client.post(
        "/api/metadata/fields", headers=rest.admin, json={"name": "site", "type": "int"}
    )
    assert r.status_code == 409
    r = rest.client.post(
        "/api/metadata/fields", headers=rest.admin, json={"name": "x y", "type": "int"}
    )
    assert r.status_code in (400, 422)
    assert "invalid metadata field name" in r.text
    view = set_meta(rest, alice, f"{BASE}/Paranal/gamma/f1", {"runNumber": "11"})
    assert view["own"] == {"runNumber": 11}
    bad = set_meta(rest, alice, f"{BASE}/Paranal", {"runNumber": "x"}, code=400)
    assert "'runNumber' is of type int" in bad["message"]
    r = rest.client.get("/api/metadata/values", headers=bob, params={"path": f"{BASE}/Paranal"})
    assert r.json()["own"] == {"site": "Paranal", "particle": "gamma"}
    eve = rest.user("eve", "other_group")
    assert set_meta(rest, eve, f"{BASE}/Paranal", {"site": "X"}, code=403)["error"] == "forbidden"
    r = rest.client.get("/api/metadata/values", headers=bob, params={"path": "/nope"})
    assert r.status_code == 404
    r = rest.client.delete("/api/metadata/fields/site", headers=rest.admin)
    assert r.status_code == 409


def test_find_stream_page_count(rest: Api, tree: Tree, alice: Headers) -> None:
    body = {"query": "site=Paranal particle=gamma runNumber>=1"}
    r = rest.client.post("/api/metadata/find", headers=alice, json=body)
    assert r.status_code == 200
    expected = [f"{BASE}/Paranal/gamma/f{i}" for i in (1, 2, 3)]
    assert r.text.splitlines() == expected
    r = rest.client.post("/api/metadata/find?format=ndjson", headers=alice, json=body)
    assert [json.loads(line) for line in r.text.splitlines()] == expected
    page = rest.client.post(
        "/api/metadata/find/page", headers=alice, json={**body, "limit": 2}
    ).json()
    assert page["lfns"] == expected[:2]
    page2 = rest.client.post(
        "/api/metadata/find/page",
        headers=alice,
        json={**body, "limit": 2, "cursor": page["next_cursor"]},
    ).json()
    assert page2 == {"lfns": expected[2:], "next_cursor": None}
    r = rest.client.post(
        "/api/metadata/count", headers=alice, json={"query": {"particle": "gamma"}}
    )
    assert r.json() == {"count": 8, "total_size": 800}
    r = rest.client.post(
        "/api/metadata/count",
        headers=alice,
        json={"query": "runNumber=1", "path": f"{BASE}/LaPalma"},
    )
    assert r.json()["count"] == 1


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        ("sitte=Paranal", 400, "did you mean 'site'"),
        ({"site": {"like": "P%"}}, 400, "unknown operator"),
        ("site=", 400, "syntax error"),
        ("runNumber=abc", 400, "is of type int"),
    ],
)
def test_bad_queries(
    rest: Api, tree: Tree, alice: Headers, query: Any, code: int, text: str
) -> None:
    for route in ("/api/metadata/find", "/api/metadata/count", "/api/metadata/find/page"):
        r = rest.client.post(route, headers=alice, json={"query": query})
        assert r.status_code == code, r.text
        assert text in r.json()["message"]


def test_datasets(rest: Api, tree: Tree, alice: Headers, bob: Headers) -> None:
    spec = {"name": "paranal", "query": "site=Paranal"}
    r = rest.client.post("/api/metadata/datasets", headers=alice, json=spec)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Dynamic"
    assert rest.client.post("/api/metadata/datasets", headers=bob, json=spec).status_code == 409
    r = rest.client.get("/api/metadata/datasets/paranal", headers=bob)
    assert (r.json()["file_count"], r.json()["total_size"]) == (4, 400)
    assert rest.client.post("/api/metadata/datasets/paranal/freeze", headers=bob).status_code == 403
    r = rest.client.post("/api/metadata/datasets/paranal/freeze", headers=alice)
    assert r.json()["status"] == "Frozen"
    r = rest.client.get("/api/metadata/datasets/paranal/files", headers=bob)
    assert len(r.text.splitlines()) == 4
    assert [d["name"] for d in rest.client.get("/api/metadata/datasets", headers=bob).json()] == [
        "paranal"
    ]
    assert rest.client.get("/api/metadata/datasets/none/files", headers=bob).status_code == 404
    assert rest.client.delete("/api/metadata/datasets/paranal", headers=alice).status_code == 204
    assert rest.client.get("/api/metadata/datasets/paranal", headers=bob).status_code == 404
