"""The job wrapper's data work (ctaprod.pilot.data) against a real server and real POSIX SEs:
input download with checksum checks, output upload and registration, the failover path."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.http import Client
from ctaprod.core.catalog import FileRegistration
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import JobDescription
from ctaprod.core.matching import Resource
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.requests import RequestStatus, check_spec
from ctaprod.core.schemas import MatchResponse, StatusReport
from ctaprod.core.settings import Settings
from ctaprod.logic import catalog, metadata, requests, storage
from ctaprod.pilot.config import RetryPolicy, WrapperOptions
from ctaprod.pilot.data import (
    DataFailure,
    StorageElements,
    download_inputs,
    handle_outputs,
)
from ctaprod.pilot.wrapper import FINAL_FILE, PENDING_REQUESTS, deliver_final, run_job
from ctaprod.resources.storage import adler32_of
from tests.conftest import free_port
from tests.dm_helpers import data_settings
from tests.logic.test_input_data import ADMIN

pytestmark = pytest.mark.timeout(60)
J = JobStatus
FAST = RetryPolicy(max_seconds=1, initial=0.1, max_delay=0.2)
OPTS = WrapperOptions(heartbeat_interval=0.5, poll_interval=0.1, kill_grace=1.0, retry=FAST)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    s = data_settings(db_url, tmp_path)
    s.data.verify_registration = True
    return s


@pytest.fixture
def admin(live_server: Any) -> Iterator[Client]:
    with Client(live_server.url, live_server.admin_token, timeout=10) as client:
        yield client


def put(ctx: Any, tmp_path: Path, lfn: str, data: bytes, ses: list[str]) -> None:
    """Store ``data`` on each SE and register it with all these replicas."""
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    for se in ses:
        ctx.storage(se).put(lfn, src)
    checksum = adler32_of(src)
    catalog.register_files(
        ctx,
        ADMIN,
        [FileRegistration(lfn=lfn, size=len(data), checksum=checksum, se=se) for se in ses],
    )


def test_download_takes_the_local_replica_and_skips_a_corrupted_one(
    live_server: Any, admin: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = live_server.services.ctx
    put(ctx, tmp_path, "/d/in/a.dat", b"alpha" * 100, ["SE-A", "SE-B"])
    put(ctx, tmp_path, "/d/in/b.dat", b"beta", ["SE-A", "SE-B2"])
    # Same size, other bytes on SE-B: only the checksum tells.
    (tmp_path / "se" / "SE-B" / "d" / "in" / "a.dat").write_bytes(b"alphA" * 100)
    ses = StorageElements(admin.se_list())
    dest = tmp_path / "job"
    dest.mkdir()
    with caplog.at_level(logging.INFO, "ctaprod.pilot.data"):
        got = download_inputs(admin, ses, ["/d/in/a.dat", "/d/in/b.dat"], dest, "B", FAST)
    assert got == [dest / "a.dat", dest / "b.dat"]
    assert (dest / "a.dat").read_bytes() == b"alpha" * 100
    assert (dest / "b.dat").read_bytes() == b"beta"
    assert sorted(p.name for p in dest.iterdir()) == ["a.dat", "b.dat"]  # no partial file
    text = caplog.text
    assert "/d/in/a.dat: replica at SE-B is corrupted" in text
    assert "/d/in/a.dat: downloaded from SE-A" in text
    assert "/d/in/b.dat: downloaded from SE-B2" in text  # the local one first


def test_missing_inputs_are_clear_failures(live_server: Any, admin: Client, tmp_path: Path) -> None:
    ctx = live_server.services.ctx
    put(ctx, tmp_path, "/d/in/gone.dat", b"x", ["SE-A"])
    (tmp_path / "se" / "SE-A" / "d" / "in" / "gone.dat").unlink()
    ses = StorageElements(admin.se_list())
    with pytest.raises(DataFailure, match=r"^Input data not in the catalog: /d/in/nope.dat$"):
        download_inputs(admin, ses, ["/d/in/gone.dat", "/d/in/nope.dat"], tmp_path, "A", FAST)
    with pytest.raises(DataFailure, match=r"^Input data not available: /d/in/gone.dat"):
        download_inputs(admin, ses, ["/d/in/gone.dat"], tmp_path, "A", FAST)


@pytest.fixture
def matched(live_server: Any, admin: Client) -> Callable[..., MatchResponse]:
    """Submit one ``/bin/sh`` job and match it to a fresh pilot at site A."""

    def make(**doc: object) -> MatchResponse:
        admin.submit(documents=[{"Executable": "/bin/sh", "CPUTime": 600, **doc}])
        live_server.services.matcher.invalidate()
        with Client(live_server.url, live_server.pilot_token, timeout=10) as pilot:
            reg = pilot.register_pilot(f"data{time.monotonic_ns()}", "A")
        with Client(live_server.url, reg.session_token, timeout=10) as session:
            found = session.match(reg.pilot_id, Resource(site="A", cpu_time_left=200000))
        assert found is not None
        return found

    return make


def factory_for(url: str) -> Callable[[str], Client]:
    return lambda token: Client(url, token, timeout=5)


def data_job(**extra: object) -> dict[str, object]:
    return {
        "Arguments": "-c 'cat in.dat in.dat > out.dat; echo log > run_$CTAPROD_JOB_ID.log'",
        "InputData": ["/d/in/in.dat"],
        "OutputData": ["out.dat", "LFN:/d/logs/run_%j.log"],
        "OutputSE": ["SE-A", "SE-B"],
        "OutputPath": "/d/out/%j",
        "OutputMetadata": {"run": 7, "kind": "dl1"},
        **extra,
    }


def declare_fields(ctx: Any) -> None:
    metadata.add_field(ctx, ADMIN, FieldDeclaration(name="run", type="int"))
    metadata.add_field(ctx, ADMIN, FieldDeclaration(name="kind", type="string"))


def test_job_downloads_inputs_and_registers_outputs(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    ctx = live_server.services.ctx
    declare_fields(ctx)
    put(ctx, tmp_path, "/d/in/in.dat", b"input\n", ["SE-B", "SE-A"])
    storage.ban(ctx, ADMIN, "SE-A", "write", "full")  # the first OutputSE refuses
    match = matched(**data_job(OutputFileMetadata={"/d/logs/run_%j.log": {"kind": "log"}}))
    job_id = match.job_id
    outcome = run_job(factory_for(live_server.url), match, tmp_path, OPTS)
    assert (outcome.status, outcome.minor_status, outcome.delivered) == (
        J.DONE,
        "Execution Complete",
        True,
    )
    out_lfn, log_lfn = f"/d/out/{job_id}/out.dat", f"/d/logs/run_{job_id}.log"
    files = catalog.get_files(ctx, [out_lfn, log_lfn])
    assert files[out_lfn].replicas == ["SE-B"]
    assert files[out_lfn].size == 12
    stored = tmp_path / "se" / "SE-B" / out_lfn[1:]
    assert files[out_lfn].checksum == adler32_of(stored)
    assert stored.read_bytes() == b"input\ninput\n"
    assert not (tmp_path / f"job_{job_id}").exists()  # outputs safe: the directory went
    assert files[log_lfn].replicas == ["SE-B"]
    assert [r.lfn for r in catalog.ancestors(ctx, ADMIN, out_lfn)] == ["/d/in/in.dat"]
    own = metadata.get_metadata(ctx, out_lfn).own
    assert own == {"run": 7, "kind": "dl1"}
    # The log's own entry of OutputFileMetadata goes over OutputMetadata.
    assert metadata.get_metadata(ctx, log_lfn).own == {"run": 7, "kind": "log"}
    assert admin.requests(job_id=job_id).requests == []
    assert admin.job(job_id).status is J.DONE


def test_failover_and_request_when_every_output_se_fails(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    ctx = live_server.services.ctx
    declare_fields(ctx)
    put(ctx, tmp_path, "/d/in/in.dat", b"input\n", ["SE-A"])
    for se in ("SE-A", "SE-B"):
        storage.ban(ctx, ADMIN, se, "write", "down for the test")
    match = matched(**data_job())
    job_id = match.job_id
    outcome = run_job(factory_for(live_server.url), match, tmp_path, OPTS)
    assert (outcome.status, outcome.minor_status, outcome.delivered) == (
        J.COMPLETED,
        PENDING_REQUESTS,
        True,
    )
    assert not (tmp_path / f"job_{job_id}" / FINAL_FILE).exists()
    out_lfn = f"/d/out/{job_id}/out.dat"
    assert catalog.get_files(ctx, [out_lfn])[out_lfn].replicas == ["FAILOVER"]
    [req] = admin.requests(job_id=job_id).requests
    detail = requests.get_request(ctx, ADMIN, req.request_id)
    assert [
        (o.type, o.arguments.get("se") or o.arguments.get("target_ses")) for o in detail.operations
    ] == [
        ("ReplicateAndRegister", ["SE-A"]),
        ("RemoveReplica", "FAILOVER"),
        ("SetJobStatus", None),
    ]
    assert admin.job(job_id).status is J.COMPLETED
    # The SEs come back: the executor moves the files and the job becomes Done.
    storage.allow(ctx, ADMIN, "SE-A", "write")
    for _ in range(5):
        requests.execute_due(ctx, now=ctx.clock() + timedelta(hours=2))
        if requests.get_request(ctx, ADMIN, req.request_id).status is RequestStatus.DONE:
            break
    assert requests.get_request(ctx, ADMIN, req.request_id).status is RequestStatus.DONE
    assert catalog.get_files(ctx, [out_lfn])[out_lfn].replicas == ["SE-A"]
    assert not (tmp_path / "se" / "FAILOVER" / out_lfn[1:]).exists()
    assert (tmp_path / "se" / "SE-A" / out_lfn[1:]).read_bytes() == b"input\ninput\n"
    assert admin.job(job_id).status is J.DONE


def test_unreachable_catalog_turns_registration_into_a_request(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    ctx = live_server.services.ctx
    desc = JobDescription.model_validate(
        {
            **data_job(),
            "Executable": "/bin/sh",
            "OutputData": ["out.dat"],
            "OutputSE": ["SE-A"],
            "OutputPath": "/d/out/42",
        }
    )
    (tmp_path / "out.dat").write_bytes(b"payload")
    storage.ban(ctx, ADMIN, "SE-A", "write", "down")
    ses = StorageElements(admin.se_list())
    dead = Client(f"http://127.0.0.1:{free_port()}", "x", timeout=1)
    result = handle_outputs(dead, lambda: ses, 42, desc, tmp_path, "/unused", "A", FAST)
    assert result.registered is False
    spec = check_spec(result.request)  # type: ignore[arg-type]
    assert spec.job_id == 42
    assert [op.type for op in spec.operations] == [
        "RegisterFile",
        "ReplicateAndRegister",
        "RemoveReplica",
        "SetJobStatus",
    ]
    reg = spec.operations[0]
    assert reg.arguments["se"] == "FAILOVER"
    assert reg.arguments["file_metadata"] == {"/d/out/42/out.dat": {"run": 7, "kind": "dl1"}}
    assert reg.arguments["file_parents"] == {"/d/out/42/out.dat": ["/d/in/in.dat"]}
    [f] = reg.files
    assert (f.lfn, f.size, f.checksum) == ("/d/out/42/out.dat", 7, adler32_of(tmp_path / "out.dat"))
    assert f.guid
    assert (tmp_path / "se" / "FAILOVER" / "d/out/42/out.dat").read_bytes() == b"payload"


def test_request_kept_on_disk_until_the_server_takes_it(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    """A final report and request that could not be delivered are sent later, in order."""
    ctx = live_server.services.ctx
    declare_fields(ctx)
    put(ctx, tmp_path, "/d/in/in.dat", b"input\n", ["SE-A"])
    match = matched(**data_job())
    job_id = match.job_id
    spec = {
        "name": "later",
        "job_id": job_id,
        "operations": [{"type": "SetJobStatus", "arguments": {"status": "Done"}}],
    }
    path = tmp_path / FINAL_FILE
    report = {"job_id": job_id, "status": "Completed", "minor_status": PENDING_REQUESTS}
    path.write_text(json.dumps({"token": match.job_token, "report": report, "request": spec}))
    with Client(live_server.url, match.job_token) as job_client:
        job_client.report(StatusReport(job_id=job_id, status=J.RUNNING))
        dead = Client(f"http://127.0.0.1:{free_port()}", match.job_token, timeout=1)
        assert deliver_final(dead, path, FAST) is False
        assert json.loads(path.read_text()).get("reported") is None
        assert deliver_final(job_client, path, FAST) is True
    assert not path.exists()
    assert admin.job(job_id).status is J.COMPLETED
    [req] = admin.requests(job_id=job_id).requests
    assert req.name == "later"


def test_output_lfns_and_metadata_in_jdl() -> None:
    from ctaprod.core.jdl import parse_jdl
    from ctaprod.logic.jobs import jdl_of

    desc = JobDescription.model_validate(
        {
            "Executable": "x",
            "OutputData": ["sub/a.dat", "LFN:/ctao/logs/b.log"],
            "OutputPath": "LFN:/ctao/out/",
            "OutputMetadata": '{"run": 3}',
        }
    )
    assert desc.output_path == "/ctao/out"
    assert desc.output_metadata == {"run": 3}
    assert desc.output_lfns("/default") == {
        "sub/a.dat": "/ctao/out/a.dat",
        "LFN:/ctao/logs/b.log": "/ctao/logs/b.log",
    }
    no_path = desc.model_copy(update={"output_path": ""})
    assert no_path.output_lfns("/default")["sub/a.dat"] == "/default/a.dat"
    again = JobDescription.model_validate(dict(parse_jdl(jdl_of(desc))))
    assert again == desc
    with pytest.raises(ValueError, match="OutputMetadata"):
        JobDescription.model_validate({"Executable": "x", "OutputMetadata": "[1]"})
    # Per-output metadata: a JSON string in JDL too, keyed by the outputs' LFNs.
    per_file = desc.model_copy(
        update={"output_file_metadata": {"/ctao/logs/b.log": {"kind": "log"}}}
    )
    assert '"{\\"/ctao/logs/b.log\\": {\\"kind\\": \\"log\\"}}"' in jdl_of(per_file)
    again = JobDescription.model_validate(dict(parse_jdl(jdl_of(per_file))))
    assert again == per_file
    assert again.metadata_of("/ctao/logs/b.log") == {"run": 3, "kind": "log"}
    assert again.metadata_of("/ctao/out/a.dat") == {"run": 3}
    with pytest.raises(ValueError, match="not an OutputData LFN"):
        JobDescription.model_validate(
            {**desc.to_jdl_dict(), "OutputFileMetadata": {"LFN:/ctao/other": {"run": 4}}}
        )
    with pytest.raises(ValueError, match="OutputFileMetadata must map"):
        JobDescription.model_validate({"Executable": "x", "OutputFileMetadata": '{"/a": 1}'})
    with pytest.raises(ValueError, match="OutputPath"):
        JobDescription.model_validate({"Executable": "x", "OutputPath": "rel/dir"})
