"""Storage element routes: listing with credentials only for admins and for a job's own SEs,
none for pilots; ban/allow rights, history."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctaprod.core.settings import Settings, StorageElementConfig
from tests.api.conftest import Api, Headers
from tests.dm_helpers import make_settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        db_url,
        tmp_path,
        storage_elements={
            "CTAO-S3": StorageElementConfig(
                plugin="s3",
                endpoint="http://127.0.0.1:1",
                base_path="bucket/prefix",
                site="LCG.A.org",
                options={"access_key": "AK", "secret_key": "SK", "region": "eu"},
            ),
            "CTAO-DISK": StorageElementConfig(base_path=str(tmp_path / "disk"), site="LCG.B.org"),
        },
    )


def test_list_hides_credentials_from_users(rest: Api, alice: Headers) -> None:
    r = rest.client.get("/api/storage/elements", headers=alice)
    assert r.status_code == 200, r.text
    s3 = {se["name"]: se for se in r.json()}["CTAO-S3"]
    assert s3["options"] == {"access_key": "***", "secret_key": "***", "region": "eu"}
    assert (s3["plugin"], s3["endpoint"], s3["base_path"], s3["site"]) == (
        "s3",
        "http://127.0.0.1:1",
        "bucket/prefix",
        "LCG.A.org",
    )
    r = rest.client.get("/api/storage/elements", headers=rest.admin)
    assert {se["name"]: se for se in r.json()}["CTAO-S3"]["options"]["secret_key"] == "SK"
    # Pilot tokens see no SE at all: a job's wrapper lists them with its job token.
    assert rest.client.get("/api/storage/elements", headers=rest.pilot).status_code == 403
    _pilot_id, session = rest.register()
    assert rest.client.get("/api/storage/elements", headers=session).status_code == 403
    assert rest.client.get("/api/storage/elements").status_code == 401


def test_job_token_sees_the_credentials_of_its_own_ses(rest: Api, alice: Headers) -> None:
    # A job writing to CTAO-DISK only: the S3 keys stay hidden from its token.
    _job_id, job, _, _ = rest.matched_job(alice, OutputSE=["CTAO-DISK"])
    r = rest.client.get("/api/storage/elements", headers=job)
    assert r.status_code == 200, r.text
    assert {se["name"]: se for se in r.json()}["CTAO-S3"]["options"]["secret_key"] == "***"
    r = rest.client.get("/api/storage/elements/CTAO-S3", headers=job)
    assert r.json()["element"]["options"]["secret_key"] == "***"
    # A job naming CTAO-S3 gets its keys, while its attempt is current.
    job_id, job, _, _ = rest.matched_job(alice, OutputSE=["CTAO-S3"])
    r = rest.client.get("/api/storage/elements", headers=job)
    assert {se["name"]: se for se in r.json()}["CTAO-S3"]["options"]["secret_key"] == "SK"
    r = rest.client.get("/api/storage/elements/CTAO-S3", headers=job)
    assert r.json()["element"]["options"]["access_key"] == "AK"
    r = rest.client.post("/api/jobs/kill", headers=alice, json={"job_ids": [job_id]})
    assert r.status_code == 204, r.text
    rest.services.tokens.forget_all()
    r = rest.client.get("/api/storage/elements", headers=job)
    if r.status_code == 200:  # a dead attempt's token, if still accepted, shows no keys
        assert {se["name"]: se for se in r.json()}["CTAO-S3"]["options"]["secret_key"] == "***"
    else:
        assert r.status_code in (401, 403)
    # A job without OutputSE may write to any non-failover SE: it gets their keys.
    _job_id, job, _, _ = rest.matched_job(alice)
    r = rest.client.get("/api/storage/elements", headers=job)
    assert {se["name"]: se for se in r.json()}["CTAO-S3"]["options"]["access_key"] == "AK"


def test_ban_allow_show(rest: Api, alice: Headers) -> None:
    operator = rest.user("olga", "ctao_ops", ["Operator"])
    body = {"access": "write", "reason": "disk full"}
    r = rest.client.post("/api/storage/elements/CTAO-DISK/ban", headers=alice, json=body)
    assert r.status_code == 403
    assert "Operator or Admin" in r.json()["message"]
    r = rest.client.post("/api/storage/elements/CTAO-DISK/ban", headers=operator, json=body)
    assert r.status_code == 200, r.text
    assert (r.json()["write"], r.json()["write_reason"], r.json()["read"]) == (
        False,
        "disk full",
        True,
    )
    r = rest.client.post(
        "/api/storage/elements/CTAO-DISK/ban", headers=operator, json={"access": "read"}
    )
    assert r.status_code == 400
    assert "reason" in r.json()["message"]
    r = rest.client.post(
        "/api/storage/elements/CTAO-DISK/ban", headers=operator, json={"access": "all"}
    )
    assert r.status_code == 422
    r = rest.client.post("/api/storage/elements/NOPE/ban", headers=operator, json=body)
    assert r.status_code == 404
    r = rest.client.post(
        "/api/storage/elements/CTAO-DISK/allow", headers=rest.admin, json={"access": "both"}
    )
    assert r.json()["write"] is True
    r = rest.client.get("/api/storage/elements/CTAO-DISK", headers=alice)
    assert r.status_code == 200
    history = r.json()["history"]
    admin = rest.client.get("/api/auth/whoami", headers=rest.admin).json()["user"]
    assert [(h["access"], h["allowed"], h["author"]) for h in history] == [
        ("write", True, admin),
        ("read", True, admin),
        ("write", False, "olga"),
    ]
    assert history[-1]["reason"] == "disk full"
    assert rest.client.get("/api/storage/elements/NOPE", headers=alice).status_code == 404


def test_job_token_sees_the_credentials_of_its_input_ses(rest: Api, alice: Headers) -> None:
    lfn = "/ctao/user/a/alice/in.dat"
    reg = [{"lfn": lfn, "size": 1, "checksum": "00000001", "se": "CTAO-S3"}]
    r = rest.client.post("/api/catalog/files?verify=false", headers=alice, json=reg)
    assert r.status_code == 201, r.text
    job_id = rest.submit_one(alice, OutputSE=["CTAO-DISK"], InputData=[f"LFN:{lfn}"])
    pilot_id, pilot = rest.register(site="LCG.A.org")
    m = rest.match(pilot_id, pilot, site="LCG.A.org")
    assert m is not None
    assert m["job_id"] == job_id
    r = rest.client.get(
        "/api/storage/elements", headers={"Authorization": f"Bearer {m['job_token']}"}
    )
    assert {se["name"]: se for se in r.json()}["CTAO-S3"]["options"]["secret_key"] == "SK"
