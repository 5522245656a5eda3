"""Production routes through the real app: submit with 4xx bodies naming the step and the
key, dry run, show/status/log by ID or name, drive with 409 naming the current state, 403
without ProductionManagement, everybody reads."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api

BASE = "/ctao/MC/API"


def production(**kw: Any) -> dict[str, Any]:
    mc = {
        "type": "MCSimulation",
        "max_tasks": 2,
        "job_template": {"Executable": "sim.sh", "Arguments": "{{run_number}}"},
        "output_lfn_template": f"{BASE}/sim/{{{{run_number}}}}.simtel",
        "output_metadata": {"stage": 0},
    }
    proc = {
        "type": "Processing",
        "group_size": 1,
        "job_template": {"Executable": "proc.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": f"{BASE}/dl1/{{{{task_id}}}}.h5",
        "output_metadata": {"stage": 1},
    }
    return {
        "name": "api_prod",
        "base_path": BASE,
        "steps": [
            {"id": "1", "transformation": mc},
            {"id": "2", "parents": ["1"], "transformation": proc},
        ],
        **kw,
    }


def _setup(api: Api) -> tuple[dict[str, str], dict[str, str]]:
    pm = api.user("pm", "ctao_prod", ["ProductionManagement"])
    alice = api.user("alice", "ctao_user")
    r = api.client.post(
        "/api/metadata/fields", headers=api.admin, json={"name": "stage", "type": "int"}
    )
    assert r.status_code in (200, 201), r.text
    return pm, alice


def test_submit_show_drive(rest: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    pm, alice = _setup(rest)
    c = rest.client
    dry = c.post("/api/productions/dry-run", headers=pm, json={"definition": production()})
    assert dry.status_code == 200, dry.text
    assert [s["trans_name"] for s in dry.json()["steps"]] == ["api_prod.1", "api_prod.2"]
    refused = c.post("/api/productions", headers=alice, json={"definition": production()})
    assert refused.status_code == 403
    r = c.post("/api/productions", headers=pm, json={"definition": production(), "name": "renamed"})
    assert r.status_code == 201, r.text
    view = r.json()
    assert (view["name"], view["status"], len(view["steps"])) == ("renamed", "New", 2)
    pid = view["prod_id"]
    assert c.get(f"/api/productions/{pid}", headers=alice).json()["name"] == "renamed"
    assert c.get("/api/productions", headers=alice).json()[0]["prod_id"] == pid
    stop = c.post("/api/productions/renamed/stop", headers=pm)
    assert stop.status_code == 409
    assert "New" in stop.json()["message"]
    assert c.post("/api/productions/renamed/start", headers=alice).status_code == 403
    started = c.post("/api/productions/renamed/start", headers=pm).json()
    assert [s["trans_status"] for s in started["steps"]] == ["Active", "Active"]
    status = c.get("/api/productions/renamed/status", headers=alice).json()
    assert [s["step_id"] for s in status["steps"]] == ["1", "2"]
    assert (
        c.post("/api/productions/renamed/extend", headers=pm, json={"tasks": 3}).status_code == 200
    )
    log = c.get("/api/productions/renamed/log", headers=alice).json()
    assert [e["action"] for e in log] == ["submit", "create", "status", "extend"]
    missing = c.get("/api/productions/nope", headers=alice)
    assert missing.status_code == 404
    bad = c.post("/api/productions/renamed/validate", headers=pm, json={"checksum": "most"})
    assert bad.status_code == 422
    denied = c.post("/api/productions/renamed/validate", headers=alice, json={})
    assert denied.status_code == 403
    done = c.post("/api/productions/renamed/validate", headers=pm, json={"checksum": "none"})
    assert done.status_code == 200, done.text
    assert done.json()["validation_status"] == "Invalid"  # nothing ran: outputs missing
    shown = c.get("/api/productions/renamed", headers=alice).json()
    assert shown["validation_status"] == "Invalid"


def test_bad_input_is_a_4xx_naming_step_and_key(rest: Api) -> None:
    pm, _ = _setup(rest)
    c = rest.client
    bad = production()
    bad["steps"][1]["transformation"]["grup_size"] = 2
    r = c.post("/api/productions", headers=pm, json={"definition": bad})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["detail"]["step"] == "2"
    assert body["detail"]["key"] == "transformation.grup_size"
    assert "did you mean 'group_size'" in body["message"]
    cycle = production()
    cycle["steps"][0]["parents"] = ["2"]
    r = c.post("/api/productions", headers=pm, json={"definition": cycle})
    assert r.status_code == 400
    assert "cycle" in r.json()["message"]
    r = c.post("/api/productions", headers=pm, json={"definition": {"name": "x"}})
    assert r.status_code == 400
    assert c.get("/api/productions", headers=pm).json() == []
