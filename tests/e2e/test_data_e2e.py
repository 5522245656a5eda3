"""End to end with data on the embedded default: `ctaprod up` as a real process, real local
pilots, the embedded POSIX SEs LOCAL-DISK and LOCAL-FAILOVER, the CLI as a user runs it.

These are the "done means" of data management: (a) a job with InputData and OutputData runs
through a local pilot; its outputs are on the SE and in the catalog with metadata and
ancestry, and `ctaprod dm find` finds them; (b) with the target SE banned for writing the
same job ends Completed with a request, which moves the file once the SE is allowed again,
and the job becomes Done; no file is lost or registered twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ctaprod.core.job_states import JobStatus
from ctaprod.core.requests import RequestStatus
from ctaprod.core.schemas import JobFilter
from tests.e2e.test_embedded import embedded  # noqa: F401  (the `ctaprod up` fixture)

pytestmark = pytest.mark.slow
J = JobStatus
IN_LFN = "/ctao/e2e/in/input.dat"
PAYLOAD = b"gamma events\n" * 1000


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> SimpleNamespace:
    """`ctaprod up` with a request executor that runs every second and retries quickly."""
    for key, value in {
        "CTAPROD_AGENTS__REQUEST_EXECUTOR__INTERVAL": "1",
        "CTAPROD_DATA__REQUEST_BACKOFF_SECONDS": "1",
        "CTAPROD_DATA__REQUEST_BACKOFF_MAX_SECONDS": "2",
        "CTAPROD_DATA__REQUEST_MAX_ATTEMPTS": "1000",
    }.items():
        monkeypatch.setenv(key, value)
    env: SimpleNamespace = request.getfixturevalue("embedded")
    return env


def cli(tmp_path: Path) -> Callable[..., str]:
    """Run `ctaprod <args>` as the user configured by `ctaprod up`; its standard output."""
    env = dict(os.environ, CTAPROD_CONFIG_DIR=str(tmp_path / "client"), COLUMNS="200")

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "ctaprod.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    return run


def job_doc() -> dict[str, Any]:
    return {
        "JobName": "e2e_data",
        "Executable": "/bin/sh",
        "Arguments": "-c 'cat input.dat input.dat > result.dat; echo made result'",
        "CPUTime": 600,
        "InputData": [f"LFN:{IN_LFN}"],
        "OutputData": ["result.dat"],
        "OutputSE": ["LOCAL-DISK"],
        "OutputPath": "/ctao/e2e/out/%j",
        "OutputMetadata": {"e2e_run": 7, "e2e_kind": "dl1"},
    }


def wait_status(client: Any, job_id: int, wanted: set[JobStatus], timeout: float) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        [job] = client.search(JobFilter(job_ids=[job_id])).jobs
        if job.status in wanted or time.monotonic() > deadline:
            return JobStatus(job.status)
        time.sleep(0.5)


def on_disk(up: SimpleNamespace, se: str, lfn: str) -> Path:
    return Path(up.state) / "storage" / se / lfn.lstrip("/")


def test_jobs_with_data_and_failover(up: SimpleNamespace, tmp_path: Path) -> None:
    ctaprod, client = cli(tmp_path), up.client
    (tmp_path / "input.dat").write_bytes(PAYLOAD)
    ctaprod("dm", "meta", "add-field", "e2e_run", "int")
    ctaprod("dm", "meta", "add-field", "e2e_kind", "string")
    ctaprod("dm", "put", str(tmp_path / "input.dat"), IN_LFN)
    assert client.files([IN_LFN])[IN_LFN].replicas == ["LOCAL-DISK"]

    # (a) Input data in, output data out, registered with metadata and ancestry.
    [first] = client.submit(documents=[job_doc()])
    status = wait_status(client, first, {J.DONE, J.FAILED, J.COMPLETED}, 60)
    assert status is J.DONE, (client.job(first).minor_status, up.log.read_text()[-3000:])
    out1 = f"/ctao/e2e/out/{first}/result.dat"
    info = client.files([out1])[out1]
    assert (info.replicas, info.size) == (["LOCAL-DISK"], 2 * len(PAYLOAD))
    assert on_disk(up, "LOCAL-DISK", out1).read_bytes() == PAYLOAD * 2
    assert [r.lfn for r in client.ancestors(out1)] == [IN_LFN]
    assert client.get_meta(out1).own == {"e2e_run": 7, "e2e_kind": "dl1"}
    assert ctaprod("dm", "find", "e2e_run=7", "e2e_kind=dl1").split() == [out1]

    # (b) The target SE refuses writes: failover, request, Completed; then Done once allowed.
    ctaprod("se", "ban", "LOCAL-DISK", "--write", "--reason", "e2e: disk down")
    [second] = client.submit(documents=[job_doc()])
    status = wait_status(client, second, {J.DONE, J.FAILED, J.COMPLETED}, 60)
    assert status is J.COMPLETED, (client.job(second).minor_status, up.log.read_text()[-3000:])
    assert client.job(second).minor_status == "Pending requests"
    out2 = f"/ctao/e2e/out/{second}/result.dat"
    assert client.files([out2])[out2].replicas == ["LOCAL-FAILOVER"]
    assert on_disk(up, "LOCAL-FAILOVER", out2).read_bytes() == PAYLOAD * 2
    [req] = client.requests(job_id=second).requests
    assert req.status in (RequestStatus.WAITING, RequestStatus.ASSIGNED)
    time.sleep(2)  # the executor tries (and fails) while the SE is banned
    assert wait_status(client, second, {J.DONE, J.FAILED}, 0) is J.COMPLETED

    ctaprod("se", "allow", "LOCAL-DISK", "--write")
    status = wait_status(client, second, {J.DONE, J.FAILED}, 40)
    assert status is J.DONE, (client.job(second).minor_status, up.log.read_text()[-3000:])
    [req] = client.requests(job_id=second).requests
    assert req.status is RequestStatus.DONE
    info = client.files([out2])[out2]
    assert (info.replicas, info.size) == (["LOCAL-DISK"], 2 * len(PAYLOAD))
    assert on_disk(up, "LOCAL-DISK", out2).read_bytes() == PAYLOAD * 2
    assert not on_disk(up, "LOCAL-FAILOVER", out2).exists()
    assert [r.lfn for r in client.ancestors(out2)] == [IN_LFN]
    # Each output registered once, both found by their metadata.
    assert sorted(ctaprod("dm", "find", "e2e_run=7").split()) == sorted([out1, out2])
    assert client.files([IN_LFN])[IN_LFN].replicas == ["LOCAL-DISK"]
