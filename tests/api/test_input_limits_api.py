"""Limits on every input, through the real app on every engine: each bad value is a 4xx
with a JSON error body naming the problem, never a 500, and the same on the three engines."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, Headers

LONG = "S" * 300


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "detail"}
    return dict(body)


def test_a_long_site_name_is_refused_the_same_on_every_engine(rest: Api) -> None:
    admin = rest.admin
    r = rest.client.put(f"/api/sites/{LONG}", headers=admin, json={"status": "Banned"})
    body = _error(r, 400)
    assert "site name" in body["message"]


def test_a_long_group_description_is_refused_before_the_database(rest: Api) -> None:
    r = rest.client.post(
        "/api/admin/groups", headers=rest.admin, json={"name": "g", "description": "d" * 300}
    )
    _error(r, 422)


@pytest.mark.parametrize(
    ("method", "path", "json"),
    [
        ("get", "/api/jobs/123456789012345678901234567890", None),
        ("delete", "/api/jobs/9223372036854775808", None),
        ("post", "/api/requests/99999999999999999999/cancel", None),
        ("get", "/api/requests?job_id=99999999999999999999", None),
        ("post", "/api/jobs/summary", {"job_ids": [2**70]}),
        ("post", "/api/jobs/heartbeats", [{"job_id": 2**64}]),
        ("post", "/api/jobs/search", {"job_ids": [1], "owner": "\ud800"}),
    ],
)
def test_integers_beyond_64_bits_and_bad_text_are_422(
    rest: Api, alice: Headers, method: str, path: str, json: Any
) -> None:
    kwargs: dict[str, Any] = {"headers": {**alice, "Content-Type": "application/json"}}
    if json is not None:
        import json as _json

        kwargs["content"] = _json.dumps(json).encode()
    r = getattr(rest.client, method)(path, **kwargs)
    _error(r, 422)


def test_a_bulk_call_over_its_list_limit_is_422_naming_it(rest: Api, alice: Headers) -> None:
    r = rest.client.post("/api/jobs/summary", headers=alice, json={"job_ids": list(range(10_001))})
    body = _error(r, 422)
    assert "at most 1000 items" in body["message"]


@pytest.mark.parametrize(
    ("jdl", "attribute"),
    [
        ('Executable = /bin/true; Arguments = "a\x01b";', "Arguments"),
        ('Executable = /bin/true; OutputPath = "/ctao/a/../b";', "OutputPath"),
        ('Executable = /bin/true; OutputPath = "relative/dir";', "OutputPath"),
        ('Executable = /bin/true; OutputSE = "DISK SE;rm";', "OutputSE"),
        ('Executable = /bin/true; InputData = {"LFN:/ctao/a b"};', "InputData"),
        ('Executable = /bin/true; InputSandbox = {"LFN:/ctao//x"};', "InputSandbox"),
        ('Executable = /bin/true; OutputData = {"LFN:/ctao/x/"};', "OutputData"),
        ('Executable = /bin/true; Site = "' + LONG + '";', "Site"),
        ("Executable = /bin/true; X = " + "{" * 900 + "}" * 900 + ";", None),
        ("Executable = /bin/true; CPUTime = " + "9" * 5000 + ";", None),
        ("Executable = /bin/true; Parameters = 5000; ParameterFactor = 10;", "ParameterFactor"),
        ('Executable = /bin/true; Parameters = 3; ParameterStep = "nan";', "ParameterStep"),
        ("Executable = /bin/true; Parameters = 3; ParameterStart = " + "7" * 300 + ";", None),
    ],
)
def test_a_job_the_worker_could_not_run_is_refused_at_submission(
    rest: Api, alice: Headers, jdl: str, attribute: str | None
) -> None:
    before = rest.count_jobs()
    body = rest.submit(alice, text=jdl, fmt="jdl", expect=400)
    if attribute is not None:
        assert attribute in body["message"]
    assert rest.count_jobs() == before


def test_a_nul_in_executable_sent_as_json_is_refused(rest: Api, alice: Headers) -> None:
    r = rest.client.post(
        "/api/jobs", headers=alice, json={"documents": [{"Executable": "/bin/echo\x00x"}]}
    )
    _error(r, 422)


def test_real_dirac_jdls_are_still_accepted(rest: Api, alice: Headers) -> None:
    jdl = (
        '[\n  JobName = "ok";\n  Executable = "/bin/echo";\n  Arguments = "a\tb";\n'
        '  OutputSE = "LOCAL-DISK";\n  OutputPath = "/ctao/user/a/alice/out";\n'
        '  OutputData = {"f.txt", "LFN:/ctao/user/a/alice/g.txt"};\n'
        '  Site = "LCG.CERN.cern";\n]\n'
    )
    assert len(rest.submit(alice, text=jdl, fmt="jdl")) == 1


def test_error_bodies_hide_server_paths(rest: Api, alice: Headers, services: Any) -> None:
    from ctaprod.api.errors import Scrubber

    state = str(services.ctx.settings.state_dir)
    scrub = Scrubber([state])
    shown = scrub.text(f"cannot open {state}/storage/x and /tmp/ctaprod-sb-1.tar.gz \ud800\x00")
    assert state not in shown
    assert "/tmp/" not in shown
    shown.encode("utf-8")
    assert "\x00" not in shown
