"""The user-facing job routes: submission (JDL, YAML, JSON), searches, control, history."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctaprod.core.archive import make_archive
from tests.api.conftest import Api, Headers, TestClient
from tests.fixtures import fixture_dir

FIXTURES = ["simple.jdl", "lfn_input_data.jdl", "lfn_input_sandbox.jdl", "input_output_sandbox.jdl"]


def dirac_fixtures() -> Path:
    return fixture_dir("dirac-jdl")


def upload_script(rest: Api, owner: Headers, tmp_path: Path) -> str:
    """Upload testJob.sh as a sandbox archive, as the client does; return its sha256."""
    archive = tmp_path / "sandbox.tar.gz"
    sha = make_archive([dirac_fixtures() / "testJob.sh"], archive)
    r = rest.client.put(f"/api/sandboxes/{sha}", headers=owner, content=archive.read_bytes())
    assert r.status_code == 201, r.text
    return sha


# -- submission -----------------------------------------------------------------------------


def test_submit_simple_jdl(rest: Api, alice: Headers) -> None:
    [job_id] = rest.submit(alice, (dirac_fixtures() / "simple.jdl").read_text())
    job = rest.job(alice, job_id)
    assert (job["status"], job["owner"], job["owner_group"]) == ("Waiting", "alice", "ctao_user")
    assert job["job_name"] == "Simple_Job"
    assert job["description"]["Executable"] == "/bin/ls"
    assert job["description"]["Arguments"] == "-ltr"
    assert job["description"]["OutputSandbox"] == ["StdOut", "StdErr"]
    assert 'Executable = "/bin/ls";' in job["jdl"]
    # What GET returns can be submitted again as it is.
    [again] = rest.submit(alice, job["jdl"], "jdl")
    assert rest.job(alice, again)["description"] == job["description"]


@pytest.mark.parametrize(
    "name", ["lfn_input_data.jdl", "lfn_input_sandbox.jdl", "input_output_sandbox.jdl"]
)
def test_local_input_sandbox_needs_an_upload(
    rest: Api, alice: Headers, tmp_path: Path, name: str
) -> None:
    text = (dirac_fixtures() / name).read_text()
    body = rest.submit(alice, text, expect=400)
    assert "testJob.sh" in body["message"]
    assert "not uploaded" in body["message"]
    assert rest.count_jobs() == 0
    # The client replaces local files by the reference of their uploaded archive.
    sha = upload_script(rest, alice, tmp_path)
    if "LFN:" in text:  # input data and LFN sandboxes must be in the catalog
        register_lfns(rest, ["/vo.formation.idgrilles.fr/user/v/vhamar/test.txt"])
    [job_id] = rest.submit(
        alice,
        text.replace('"testJob.sh",', f'"SB:{sha}",').replace('{"testJob.sh"}', f'{{"SB:{sha}"}}'),
    )
    desc = rest.job(alice, job_id)["description"]
    assert f"SB:{sha}" in desc["InputSandbox"]
    assert desc["Executable"] == "testJob.sh"


def test_parametric_submission(rest: Api, alice: Headers) -> None:
    text = (
        'JobName = "param_%n"; Executable = "/bin/echo"; Arguments = "%s";\n'
        "Parameters = 5; ParameterStart = 2; ParameterStep = 1; ParameterFactor = 2;\n"
    )
    ids = rest.submit(alice, text)
    assert len(ids) == 5
    jobs = [rest.job(alice, j) for j in ids]
    assert [j["job_name"] for j in jobs] == [f"param_{n}" for n in range(5)]
    assert [j["description"]["Arguments"] for j in jobs] == ["2", "5", "11", "23", "47"]


def test_too_many_parametric_jobs(rest: Api, alice: Headers) -> None:
    rest.services.ctx.settings.jobs.max_parametric_jobs = 10
    body = rest.submit(alice, 'Executable = "x"; Parameters = 11;', expect=413)
    assert body["error"] == "too_large"
    assert "limit is 10" in body["message"]
    assert rest.count_jobs() == 0
    assert len(rest.submit(alice, 'Executable = "x"; Parameters = 10;')) == 10


def test_cpu_time_out_of_range(rest: Api, alice: Headers) -> None:
    rest.services.ctx.settings.jobs.max_cpu_time = 3600
    body = rest.submit(alice, 'Executable = "x"; CPUTime = 3601;', expect=400)
    assert body["detail"]["attribute"] == "CPUTime"
    assert "3601" in body["message"]
    rest.submit(alice, 'Executable = "x"; CPUTime = 3600;')


def test_too_many_input_data(rest: Api, alice: Headers) -> None:
    rest.services.ctx.settings.jobs.max_input_data = 2
    lfns = [f"LFN:/ctao/f{i}" for i in range(3)]
    body = rest.submit(alice, documents=[{"Executable": "x", "InputData": lfns}], expect=400)
    assert body["detail"]["attribute"] == "InputData"
    assert rest.count_jobs() == 0


def test_malformed_jdl(rest: Api, alice: Headers) -> None:
    body = rest.submit(
        alice, 'Executable = "/bin/ls";\nArguments = "-l" "-t";\nJobName = "x";', "jdl", expect=400
    )
    assert body["error"] == "invalid_input"
    assert body["detail"] == {"line": 2, "column": 18}
    assert "line 2, column 18" in body["message"]
    # A forgotten ';' is reported where the next attribute starts.
    body = rest.submit(
        alice, 'Executable = "/bin/ls";\nArguments = "-l"\nJobName = "x";', "jdl", expect=400
    )
    assert (body["detail"]["line"], body["detail"]["column"]) == (3, 1)
    assert "Arguments" in body["message"]
    assert rest.count_jobs() == 0


def test_unknown_attribute(rest: Api, alice: Headers) -> None:
    body = rest.submit(alice, 'Executable = "x"; OutputSandBoxx = {"a"};', expect=400)
    assert "did you mean 'OutputSandbox'" in body["message"]


def test_wrong_type(rest: Api, alice: Headers) -> None:
    body = rest.submit(alice, documents=[{"Executable": "x", "Priority": "urgent"}], expect=400)
    assert body["detail"]["attribute"] == "Priority"


def test_yaml_and_json_texts(rest: Api, alice: Headers) -> None:
    docs = [
        {"Executable": "/bin/a", "JobGroup": "y"},
        {"Executable": "/bin/b", "Parameters": ["p", "q"], "Arguments": "%s"},
    ]
    ids_yaml = rest.submit(alice, yaml.safe_dump(docs), "yaml")
    ids_json = rest.submit(alice, json.dumps(docs, indent=2))  # auto-detected
    ids_docs = rest.submit(alice, documents=docs)
    for ids in (ids_yaml, ids_json, ids_docs):
        assert len(ids) == 3
        assert [rest.job(alice, j)["description"]["Arguments"] for j in ids] == ["", "p", "q"]


def test_bulk_submission_stores_nothing_when_one_job_is_bad(rest: Api, alice: Headers) -> None:
    rest.submit_one(alice)
    before = rest.count_jobs()
    good = {"Executable": "/bin/true"}
    rest.submit(alice, documents=[good] * 20 + [{"Executable": "x", "Priority": 99}], expect=400)
    rest.submit(
        alice, yaml.safe_dump([good, good, {"Executable": "x", "Prioirty": 1}]), "yaml", expect=400
    )
    rest.submit(
        alice, documents=[good, {"Executable": "x", "InputSandbox": ["SB:" + "0" * 64]}], expect=404
    )
    rest.services.ctx.settings.jobs.max_parametric_jobs = 3
    rest.submit(alice, documents=[good, {"Executable": "x", "Parameters": 4}], expect=413)
    assert rest.count_jobs() == before


def test_nothing_to_submit(rest: Api, alice: Headers) -> None:
    rest.submit(alice, expect=400)
    rest.submit(alice, documents=[], expect=400)
    rest.submit(alice, "[]", "json", expect=400)


# -- control --------------------------------------------------------------------------------


def test_reschedule_of_a_waiting_job_is_409(rest: Api, alice: Headers) -> None:
    job_id = rest.submit_one(alice)
    r = rest.client.post("/api/jobs/reschedule", headers=alice, json={"job_ids": [job_id]})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "invalid_transition"
    assert body["detail"]["current"] == "Waiting"
    assert f"job {job_id} is Waiting" in body["message"]


def test_kill_reschedule_delete(rest: Api, alice: Headers) -> None:
    job_id = rest.submit_one(alice)
    assert (
        rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [job_id]}).status_code
        == 204
    )
    again = rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [job_id]})
    assert again.status_code == 409
    assert again.json()["detail"]["current"] == "Killed"
    r = rest.client.post("/api/jobs/reschedule", headers=alice, json={"job_ids": [job_id]})
    assert r.status_code == 200
    assert r.json() == {"statuses": {str(job_id): "Waiting"}}
    job = rest.job(alice, job_id)
    assert (job["status"], job["reschedule_count"]) == ("Waiting", 1)
    assert rest.client.delete(f"/api/jobs/{job_id}", headers=alice).status_code == 204
    assert rest.job(alice, job_id)["status"] == "Deleted"
    history = rest.client.get(f"/api/jobs/{job_id}/history", headers=alice).json()
    assert [h["status"] for h in history] == [
        "Received",
        "Checking",
        "Waiting",
        "Killed",
        "Rescheduled",
        "Waiting",
        "Killed",
        "Deleted",
    ]
    assert history[3]["source"] == "user:alice"
    times = [h["time"] for h in history]
    assert times == sorted(times)
    gone = rest.client.post("/api/jobs/delete", headers=alice, json={"job_ids": [job_id]})
    assert gone.status_code == 409


def test_unknown_job(rest: Api, alice: Headers) -> None:
    assert rest.client.get("/api/jobs/424242", headers=alice).status_code == 404
    assert rest.client.get("/api/jobs/424242/history", headers=alice).status_code == 404
    r = rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [424242]})
    assert r.status_code == 404
    assert (
        rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": []}).status_code == 422
    )


def test_output_sandbox_missing(rest: Api, alice: Headers) -> None:
    job_id = rest.submit_one(alice)
    r = rest.client.get(f"/api/jobs/{job_id}/output", headers=alice)
    assert r.status_code == 404


# -- searches -------------------------------------------------------------------------------


@pytest.fixture
def population(rest: Api, alice: Headers, bob: Headers) -> dict[str, list[int]]:
    """Jobs of alice and bob with various groups, types, sites and submission times."""
    ctx = rest.services.ctx
    real_clock = ctx.clock
    out: dict[str, list[int]] = {"alice": [], "bob": [], "early": [], "late": []}
    try:
        for when, month in (("early", 1), ("late", 3)):
            ctx.clock = lambda m=month: datetime(2031, m, 1, tzinfo=UTC)  # type: ignore[misc]
            for i in range(6):
                out[when].append(
                    rest.submit_one(
                        alice,
                        JobGroup=f"g{i % 2}",
                        JobType="MC" if i % 3 == 0 else "User",
                        Site="LCG.A.fr" if i < 2 else "ANY",
                    )
                )
            out["alice"] += out[when]
            ids = rest.submit(bob, documents=[{"Executable": "x", "JobGroup": "g0"}] * 3)
            out["bob"] += ids
            out[when] += ids
    finally:
        ctx.clock = real_clock
    # One of alice's jobs is killed.
    assert (
        rest.client.post(
            "/api/jobs/kill", headers=alice, json={"job_ids": [out["alice"][0]]}
        ).status_code
        == 204
    )
    return out


def _ids(page: dict[str, Any]) -> list[int]:
    return [j["job_id"] for j in page["jobs"]]


def test_search_filters(rest: Api, alice: Headers, population: dict[str, list[int]]) -> None:
    a = population["alice"]
    admin = rest.admin

    def get(headers: Headers, **params: object) -> list[int]:
        r = rest.client.get("/api/jobs", headers=headers, params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        return sorted(_ids(r.json()))

    assert get(alice) == sorted(a)
    assert get(admin) == sorted(a + population["bob"])
    assert get(admin, owner="bob") == sorted(population["bob"])
    assert get(alice, status="Killed") == [a[0]]
    assert get(alice, status=["Killed", "Waiting"]) == sorted(a)
    assert get(alice, status="Waiting") == sorted(a[1:])
    assert get(alice, site="LCG.A.fr") == sorted([a[0], a[1], a[6], a[7]])
    assert get(alice, job_group="g1") == sorted(a[1::2])
    assert get(admin, job_group="g0") == sorted(a[0::2] + population["bob"])
    assert get(alice, job_type="MC") == sorted([a[0], a[3], a[6], a[9]])
    assert get(admin, owner_group="ctao_user") == sorted(a + population["bob"])
    assert get(alice, status="Done") == []
    bad = rest.client.get("/api/jobs", headers=alice, params={"status": "Sleeping"})
    assert bad.status_code == 422


def test_search_by_time_and_ids(
    rest: Api, alice: Headers, population: dict[str, list[int]]
) -> None:
    def post(flt: dict[str, object]) -> list[int]:
        r = rest.client.post(
            "/api/jobs/search", headers=rest.admin, json=flt, params={"limit": 1000}
        )
        assert r.status_code == 200, r.text
        return sorted(_ids(r.json()))

    feb = "2031-02-01T00:00:00Z"
    assert post({"submitted_before": feb}) == sorted(population["early"])
    assert post({"submitted_after": feb}) == sorted(population["late"])
    assert post({"submitted_after": feb, "owner": "bob"}) == sorted(
        set(population["late"]) & set(population["bob"])
    )
    some = population["alice"][2:5]
    assert post({"job_ids": some}) == sorted(some)
    r = rest.client.post("/api/jobs/count", headers=alice, json={"status": ["Waiting"]})
    assert r.json() == len(population["alice"]) - 1


@pytest.mark.parametrize("ascending", [False, True])
def test_keyset_pagination(
    rest: Api, alice: Headers, population: dict[str, list[int]], ascending: bool
) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 4, "ascending": ascending}
        if cursor is not None:
            params["cursor"] = cursor
        page = rest.client.get("/api/jobs", headers=rest.admin, params=params).json()
        pages += 1
        assert len(page["jobs"]) <= 4
        seen += _ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A job submitted while paging does not disturb the pages still to come.
        if pages == 2:
            rest.submit_one(alice)
    everything = population["alice"] + population["bob"]
    assert len(seen) == len(set(seen))
    assert set(everything) <= set(seen)
    assert seen == sorted(seen, reverse=not ascending)
    assert pages == (len(seen) + 3) // 4


def test_pagination_with_a_filter(
    rest: Api, alice: Headers, population: dict[str, list[int]]
) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        flt = {"status": ["Waiting"], "owner": "alice"}
        params: dict[str, object] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = rest.client.post(
            "/api/jobs/search", headers=rest.admin, json=flt, params=params
        ).json()
        seen += _ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(population["alice"][1:])
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("ascending", [False, True])
def test_pagination_by_status_across_owners(
    rest: Api, alice: Headers, population: dict[str, list[int]], ascending: bool
) -> None:
    """A single status without an owner (the (status, job_id) index), pages both ways."""
    a, bob = population["alice"], population["bob"]
    for extra, expected in (({}, a[1:] + bob), ({"job_group": "g0"}, a[2::2] + bob)):
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, object] = {"status": "Waiting", "limit": 4, "ascending": ascending}
            params.update(extra)
            if cursor is not None:
                params["cursor"] = cursor
            r = rest.client.get("/api/jobs", headers=rest.admin, params=params)
            assert r.status_code == 200, r.text
            seen += r.json()["jobs"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert [j["job_id"] for j in seen] == sorted(expected, reverse=not ascending)
        assert {j["status"] for j in seen} == {"Waiting"}
        assert {j["owner"] for j in seen} == {"alice", "bob"}
        assert set(seen[0]) >= {"job_id", "owner_group", "job_group", "submission_time"}


def test_summary(rest: Api, alice: Headers, population: dict[str, list[int]]) -> None:
    r = rest.client.post("/api/jobs/summary", headers=rest.admin, json={})
    assert r.json() == {"LCG.A.fr": {"Killed": 1, "Waiting": 3}, "ANY": {"Waiting": 14}}
    r = rest.client.post("/api/jobs/summary", headers=alice, json={}, params={"by": "status"})
    assert r.json() == {"Killed": {"Killed": 1}, "Waiting": {"Waiting": 11}}
    r = rest.client.post("/api/jobs/summary", headers=rest.admin, json={}, params={"by": "owner"})
    assert r.json() == {"alice": {"Killed": 1, "Waiting": 11}, "bob": {"Waiting": 6}}
    r = rest.client.post(
        "/api/jobs/summary", headers=rest.admin, json={}, params={"by": "secret_column"}
    )
    assert r.status_code == 400


def test_operation_ids_are_stable(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    for expected in (
        "jobs_submit",
        "jobs_search",
        "jobs_get_job",
        "jobs_kill",
        "pilots_match",
        "pilots_heartbeats",
        "sandboxes_upload",
        "admin_users",
        "health_check",
    ):
        assert expected in ids
    assert all(i for i in ids)
    assert len(ids) == sum(len(p) for p in spec["paths"].values())


def test_time_filters_are_timezone_aware(rest: Api, alice: Headers) -> None:
    rest.submit_one(alice)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = rest.client.post("/api/jobs/search", headers=alice, json={"submitted_after": later})
    assert r.status_code == 200
    assert r.json()["jobs"] == []


def test_too_many_jobs_in_one_call(rest: Api, alice: Headers) -> None:
    rest.services.ctx.settings.jobs.max_jobs_per_call = 3
    for body in (
        {"documents": [{"Executable": "x"}] * 4},
        {"text": "- Executable: x\n" * 4},
        {"text": "Executable = x; Parameters = 4;"},
        {"documents": [{"Executable": "x", "Parameters": 2}] * 2},
    ):
        r = rest.client.post("/api/jobs", headers=alice, json=body)
        assert r.status_code == 413, (body, r.text)
        assert "more than 3 jobs in one submission" in r.json()["message"]
    assert rest.count_jobs() == 0
    assert len(rest.submit(alice, documents=[{"Executable": "x"}] * 3)) == 3


def test_times_without_a_zone_are_utc(rest: Api, alice: Headers) -> None:
    job_id = rest.submit_one(alice)
    submitted = datetime.fromisoformat(rest.job(alice, job_id)["submission_time"])
    naive_before = (submitted - timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    naive_after = (submitted + timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    for flt, expected in (
        ({"submitted_after": naive_before}, [job_id]),
        ({"submitted_after": naive_after}, []),
        ({"submitted_before": naive_after}, [job_id]),
        ({"updated_after": naive_after}, []),
    ):
        r = rest.client.post("/api/jobs/search", headers=alice, json=flt)
        assert r.status_code == 200, r.text
        assert _ids(r.json()) == expected, flt


# -- DIRAC JDL as its Job API and its users write it -----------------------------------------


def with_uploaded_script(text: str, sha: str) -> str:
    """The fixture with its local testJob.sh sandbox entry replaced by the uploaded archive
    (what the client does), in quoted and in bare (Job API) form."""
    text = text.replace('InputSandbox = {"testJob.sh"}', f'InputSandbox = {{"SB:{sha}"}}')
    return re.sub(r"(?m)^(\s*)testJob\.sh$", rf"\g<1>SB:{sha}", text)


def test_job_api_parametric_fixture_end_to_end(rest: Api, alice: Headers, tmp_path: Path) -> None:
    sha = upload_script(rest, alice, tmp_path)
    register_lfns(rest, [f"/ctao/sim/{n}.dat" for n in ("a1", "a2", "b1", "c1", "c2")])
    text = with_uploaded_script((dirac_fixtures() / "job_api_parametric.jdl").read_text(), sha)
    ids = rest.submit(alice, text)
    jobs = [rest.job(alice, j) for j in ids]
    assert [j["job_name"] for j in jobs] == ["sim_0", "sim_1", "sim_2"]
    assert [j["job_group"] for j in jobs] == ["prod_101", "prod_202", "prod_303"]
    descs = [j["description"] for j in jobs]
    assert [d["InputData"] for d in descs] == [
        ["/ctao/sim/a1.dat", "/ctao/sim/a2.dat"],
        ["/ctao/sim/b1.dat"],
        ["/ctao/sim/c1.dat", "/ctao/sim/c2.dat"],
    ]
    assert [d["Arguments"] for d in descs] == [
        f"--seed {s} --energy {e} --cfg /Resources/Tuning=fast"
        for s, e in (("101", "0.5"), ("202", "1.50"), ("303", "1e3"))
    ]
    assert descs[0]["ExecutionEnvironment"] == {"CTA_STAGE": "simulation", "CTA_LABEL": "run one"}
    assert (descs[0]["MinNumberOfProcessors"], descs[0]["MaxNumberOfProcessors"]) == (2, 4)
    assert descs[0]["InputSandbox"] == [f"SB:{sha}"]
    assert [j["parameters"] for j in jobs] == [{"ProductionStep": "simulation"}] * 3
    # The JDL shown can be submitted again as it is.
    [again] = rest.submit(alice, jobs[1]["jdl"], "jdl")
    assert rest.job(alice, again)["description"] == descs[1]


def test_named_sequences_fixture_end_to_end(rest: Api, alice: Headers, tmp_path: Path) -> None:
    sha = upload_script(rest, alice, tmp_path)
    text = with_uploaded_script((dirac_fixtures() / "named_sequences.jdl").read_text(), sha)
    jobs = [rest.job(alice, j) for j in rest.submit(alice, text)]
    assert [j["description"]["Arguments"] for j in jobs] == [
        "--zenith 20 --azimuth 1 --offset 0.0",
        "--zenith 30 --azimuth 2 --offset 0.1",
        "--zenith 40 --azimuth 4 --offset 0.2",
        "--zenith 50 --azimuth 8 --offset 0.30000000000000004",
    ]
    assert [j["job_name"] for j in jobs] == ["scan_0", "scan_1", "scan_2", "scan_3"]


def test_nested_input_data_fixture_end_to_end(rest: Api, alice: Headers) -> None:
    register_lfns(rest, ["/ctao/dl0/run1/a.dat", "/ctao/dl0/run1/b.dat", "/ctao/dl0/run2/a.dat"])
    text = (dirac_fixtures() / "nested_input_data.jdl").read_text()
    jobs = [rest.job(alice, j) for j in rest.submit(alice, text)]
    assert [j["description"]["InputData"] for j in jobs] == [
        ["/ctao/dl0/run1/a.dat", "/ctao/dl0/run1/b.dat"],
        ["/ctao/dl0/run2/a.dat"],
    ]
    assert jobs[1]["description"]["Arguments"] == 'inputs: {"LFN:/ctao/dl0/run2/a.dat"}'


def test_custom_attributes_fixture_end_to_end(rest: Api, alice: Headers) -> None:
    [job_id] = rest.submit(alice, (dirac_fixtures() / "custom_attributes.jdl").read_text())
    job = rest.job(alice, job_id)
    assert job["parameters"] == {
        "ProductionID": "00042",
        "DataLevel": "DL1",
        "CalibrationSteps": '{"pedestal", "flatfield"}',
        "Telescope": "LST1",
        "ZenithAngle": "20.5",
    }
    assert 'Telescope = "LST1";' in job["jdl"]
    desc = job["description"]
    assert (desc["MinRAM"], desc["MaxRAM"], desc["GridCE"]) == (
        2048,
        4096,
        ["ce01.cta-observatory.org"],
    )
    # Only a pilot at that CE with 2 processors and 2 GB gets it.
    pilot_id, pilot = rest.register()
    assert (
        rest.match(pilot_id, pilot, ce="ce02", processors=4, memory_mb=4096, tags=["GPU"]) is None
    )
    small = rest.match(
        pilot_id, pilot, ce="ce01.cta-observatory.org", processors=1, memory_mb=4096, tags=["GPU"]
    )
    assert small is None
    m = rest.match(
        pilot_id, pilot, ce="ce01.cta-observatory.org", processors=2, memory_mb=2048, tags=["GPU"]
    )
    assert m is not None
    assert m["job_id"] == job_id


@pytest.mark.parametrize(
    ("text", "status", "words"),
    [
        (
            'Executable = "x"; Parameters = 5000; ParameterFactor = 10; Arguments = "%s";',
            400,
            "too large",
        ),
        ('Executable = "x"; Parameters.a = {1, 2}; Parameters.b = {1};', 400, "different lengths"),
        ('Executable = "x"; Arguments = "%(nope)s"; Parameters.a = {1};', 400, "'nope'"),
        ('Executable = "x"; Exectuable = "y";', 400, "did you mean 'Executable'"),
    ],
)
def test_bad_parametric_descriptions_are_4xx(
    rest: Api, alice: Headers, text: str, status: int, words: str
) -> None:
    body = rest.submit(alice, text, expect=status)
    assert words in body["message"]
    assert rest.count_jobs() == 0


def register_lfns(rest: Api, lfns: list[str]) -> None:
    """Catalog entries (replica on the embedded SE, not verified) for InputData LFNs."""
    from ctaprod.core.catalog import FileRegistration
    from ctaprod.core.identity import Identity
    from ctaprod.core.properties import TokenKind
    from ctaprod.logic import catalog

    admin = Identity(
        user="admin", group="ctao_admin", kind=TokenKind.USER, properties=frozenset({"Admin"})
    )
    regs = [FileRegistration(lfn=lfn, size=1, checksum="1", se="LOCAL-DISK") for lfn in lfns]
    catalog.register_files(rest.services.ctx, admin, regs, verify=False)
