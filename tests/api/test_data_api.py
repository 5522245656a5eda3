"""Data transfer routes: streamed upload and registration, download with checksum header,
replication, removal; a cut upload over a real socket leaves no file and no entry."""

from __future__ import annotations

import json
import socket
import time
import zlib
from pathlib import Path
from typing import Any

from ctaprod.logic import catalog
from tests.api.conftest import Api, Headers

LFN = "/ctao/user/a/alice/data/file.dat"
DATA = bytes(range(256)) * 1000


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def put(rest: Api, headers: Headers, data: bytes = DATA, **params: Any) -> Any:
    return rest.client.put(
        "/api/data/files", headers=headers, params={"lfn": LFN, **params}, content=data
    )


def se_files(services: Any, se: str) -> list[Path]:
    base = Path(services.ctx.settings.storage_element(se).base_path)
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


def test_put_get_replicate_remove(rest: Api, alice: Headers, bob: Headers) -> None:
    r = put(rest, alice, checksum=adler(DATA))
    assert r.status_code == 201, r.text
    assert r.json() == {
        "lfn": LFN,
        "se": "LOCAL-DISK",
        "size": len(DATA),
        "checksum": adler(DATA),
        "copied": True,
    }
    assert put(rest, alice).status_code == 409
    r = rest.client.get("/api/data/files", headers=bob, params={"lfn": LFN})
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["x-ctaprod-checksum"] == adler(DATA)
    assert r.headers["x-ctaprod-se"] == "LOCAL-DISK"
    assert int(r.headers["content-length"]) == len(DATA)
    body = {"lfn": LFN, "target_se": "LOCAL-FAILOVER"}
    carol = rest.user("carol", "ctao_other")  # another group: may read, not write
    assert rest.client.post("/api/data/replicate", headers=carol, json=body).status_code == 403
    r = rest.client.post("/api/data/replicate", headers=alice, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["copied"] is True
    r = rest.client.delete(
        "/api/data/replicas", headers=alice, params={"lfn": LFN, "se": "LOCAL-DISK"}
    )
    assert r.status_code == 200, r.text
    r = rest.client.delete(
        "/api/data/replicas", headers=alice, params={"lfn": LFN, "se": "LOCAL-FAILOVER"}
    )
    assert r.status_code == 409
    assert "last replica" in r.json()["message"]
    r = rest.client.delete("/api/data/files", headers=alice, params={"lfn": LFN})
    assert r.status_code == 200
    assert r.json()["file_removed"] is True
    assert catalog.get_files(rest.services.ctx, [LFN]) == {}
    assert se_files(rest.services, "LOCAL-DISK") == []
    assert se_files(rest.services, "LOCAL-FAILOVER") == []
    r = rest.client.get("/api/data/files", headers=bob, params={"lfn": LFN})
    assert r.status_code == 404


def test_bad_uploads_are_refused_cleanly(rest: Api, alice: Headers) -> None:
    operator = rest.user("olga", "ctao_ops", ["Operator"])
    cases = [
        ({"checksum": "00000001"}, 400, "ADLER32"),
        ({"checksum": "xyz"}, 400, "ADLER32"),
        ({"metadata": "{not json"}, 400, "JSON"),
        ({"metadata": "[1]"}, 400, "JSON object"),
        ({"metadata": json.dumps({"undeclared_field": 1})}, 400, "undeclared_field"),
        ({"parent": ["/ctao/none"]}, None, "/ctao/none"),
        ({"se": "NOPE"}, 404, "NOPE"),
        ({"lfn": "/ctao/../etc"}, 400, "LFN"),
    ]
    for params, status, text in cases:
        r = put(rest, alice, **params)
        assert r.status_code == status or (status is None and 400 <= r.status_code < 500), (
            params,
            r.text,
        )
        assert text in r.json()["message"], (params, r.text)
    r = rest.client.put(
        "/api/data/files",
        headers={**alice, "X-Ctaprod-Metadata": json.dumps({"other_undeclared": "x"})},
        params={"lfn": LFN},
        content=DATA,
    )
    assert r.status_code == 400
    assert "other_undeclared" in r.json()["message"]
    rest.client.post(
        "/api/storage/elements/LOCAL-DISK/ban",
        headers=operator,
        json={"access": "write", "reason": "migration"},
    )
    r = put(rest, alice)
    assert r.status_code == 503
    assert "migration" in r.json()["message"]
    assert se_files(rest.services, "LOCAL-DISK") == []
    assert catalog.get_files(rest.services.ctx, [LFN]) == {}


def test_cut_upload_over_the_network(live_server: Any) -> None:
    """The client announces 8 MiB, sends 3 MiB and goes away: no file, no entry."""
    services = live_server.services
    host, port = live_server.url.removeprefix("http://").split(":")
    head = (
        f"PUT /api/data/files?lfn={LFN} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {live_server.admin_token}\r\n"
        f"Content-Length: {8 << 20}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + b"z" * (3 << 20))
        deadline = time.monotonic() + 10
        while not se_files(services, "LOCAL-DISK") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert se_files(services, "LOCAL-DISK"), "the upload never reached the SE"
    deadline = time.monotonic() + 10
    while se_files(services, "LOCAL-DISK") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert se_files(services, "LOCAL-DISK") == []
    assert catalog.get_files(services.ctx, [LFN]) == {}
