"""Transformation routes through the real app: create with clear 4xx errors for bad input,
dry run, list/show by ID or name, drive with 409 naming the current state, read as anyone."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api


def definition(name: str = "proc", **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "Processing",
        "input_query": "particle=gamma",
        "group_size": 2,
        "job_template": {"Executable": "process.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": "/ctao/MC/Prod6/out/{{transformation_id}}/{{task_id}}.h5",
        **kw,
    }


def _setup(api: Api) -> tuple[dict[str, str], dict[str, str]]:
    pm = api.user("pm", "ctao_prod", ["ProductionManagement"])
    alice = api.user("alice", "ctao_user")
    r = api.client.post(
        "/api/metadata/fields", headers=api.admin, json={"name": "particle", "type": "string"}
    )
    assert r.status_code in (200, 201), r.text
    return pm, alice


def test_create_show_drive(rest: Api) -> None:
    api = rest
    pm, alice = _setup(api)
    c = api.client
    dry = c.post("/api/transformations", params={"dry_run": True}, headers=pm, json=definition())
    assert dry.status_code == 200, dry.text
    assert (dry.json()["matching_files"], dry.json()["tasks"]) == (0, 0)
    assert c.get("/api/transformations", headers=alice).json() == []
    r = c.post("/api/transformations", headers=pm, json=definition())
    assert r.status_code == 201, r.text
    view = r.json()
    assert (view["status"], view["owner"], view["files"]) == ("New", "pm", {})
    tid = view["trans_id"]
    assert c.get(f"/api/transformations/{tid}", headers=alice).json()["name"] == "proc"
    assert c.get("/api/transformations/proc", headers=alice).json()["trans_id"] == tid
    started = c.post("/api/transformations/proc/start", headers=pm)
    assert started.json()["status"] == "Active"
    again = c.post("/api/transformations/proc/start", headers=pm)
    assert again.status_code == 409
    assert "Active" in again.json()["message"]
    refused = c.post("/api/transformations/proc/stop", headers=alice)
    assert refused.status_code == 403
    log = c.get(f"/api/transformations/{tid}/log", headers=alice).json()
    assert [e["action"] for e in log] == ["create", "attach", "status"]
    assert c.get("/api/transformations/proc/files", headers=alice).json() == []
    assert c.get("/api/transformations/proc/tasks", headers=alice).json() == []
    listed = c.get("/api/transformations", params={"status": "Active"}, headers=alice).json()
    assert [t["name"] for t in listed] == ["proc"]


def test_bad_input_is_a_clear_4xx(rest: Api) -> None:
    api = rest
    pm, alice = _setup(api)
    c = api.client
    cases = [
        (definition(input_query="partcle=gamma"), 400, "input_query"),
        (definition(plugin="Nope"), 400, "plugin"),
        (definition(group_size=0), 400, "group_size"),
        (definition(type="Nope"), 400, "type"),
        (definition(output_lfn_template="/ctao/MC/../../x/{{task_id}}"), 400, "output_lfn"),
        (definition(job_template={"Executable": "x", "CPUTime": -5}), 400, "job_template"),
        (definition(colour="red"), 400, "colour"),
        ({"name": 5}, 400, "name"),
    ]
    for body, status, word in cases:
        r = c.post("/api/transformations", headers=pm, json=body)
        assert r.status_code == status, (body, r.text)
        assert word in r.json()["message"], (body, r.text)
    assert c.post("/api/transformations", headers=pm, json=[1, 2]).status_code == 422
    assert c.post("/api/transformations", headers=alice, json=definition()).status_code == 403
    assert c.post("/api/transformations", headers=pm, json=definition()).status_code == 201
    dup = c.post("/api/transformations", headers=pm, json=definition())
    assert dup.status_code == 409
    assert "exists already" in dup.json()["message"]
    assert c.get("/api/transformations/nope", headers=alice).status_code == 404
    bad_status = c.get("/api/transformations", params={"status": "Bogus"}, headers=alice)
    assert bad_status.status_code == 400
    for path in ("/api/transformations/proc/files", "/api/transformations/proc/tasks"):
        bad = c.get(path, params={"status": "Bogus"}, headers=alice)
        assert bad.status_code == 400, bad.text
        assert "Bogus" in bad.json()["message"]
    assert len(c.get("/api/transformations", headers=alice).json()) == 1
