"""A job the wrapper cannot run ends Failed at once, with the reason; the pilot goes on."""

from __future__ import annotations

import os
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from ctaprod.core.matching import Resource
from ctaprod.core.schemas import MatchResponse, StatusReport
from ctaprod.pilot import loop, wrapper
from ctaprod.pilot.config import PilotConfig, RetryPolicy, WrapperOptions
from ctaprod.pilot.final_status import keep_final
from ctaprod.pilot.wrapper import TOKEN_FILE, run_job

pytestmark = pytest.mark.timeout(60)
J = JobStatus
OPTS = WrapperOptions(
    heartbeat_interval=0.5,
    poll_interval=0.1,
    kill_grace=1.0,
    retry=RetryPolicy(max_seconds=5, initial=0.2, max_delay=1.0),
)


@pytest.fixture
def admin(live_server: Any) -> Iterator[Client]:
    with Client(live_server.url, live_server.admin_token, timeout=10) as client:
        yield client


@pytest.fixture
def matched(live_server: Any, admin: Client) -> Callable[..., MatchResponse]:
    """Submit one job and match it; ``change`` alters what the pilot receives (as a server
    that let a bad value through would send it)."""

    def make(change: dict[str, Any] | None = None, **doc: object) -> MatchResponse:
        admin.submit(documents=[{"Executable": "/bin/sh", **doc}])
        with Client(live_server.url, live_server.pilot_token, timeout=10) as pilot:
            reg = pilot.register_pilot(f"fail{time.monotonic_ns()}", "LOCAL.localhost.org")
        with Client(live_server.url, reg.session_token, timeout=10) as session:
            found = session.match(
                reg.pilot_id, Resource(site="LOCAL.localhost.org", cpu_time_left=200000)
            )
        assert found is not None
        if change:
            desc = found.description.model_copy(update=change)
            found = found.model_copy(update={"description": desc})
        return found

    return make


def run(live_server: Any, match: MatchResponse, work: Path, **opts: Any) -> Any:
    options = WrapperOptions(**{**OPTS.__dict__, **opts})
    return run_job(lambda t: Client(live_server.url, t, timeout=5), match, work, options)


@pytest.mark.parametrize(
    ("change", "minor"),
    [
        ({"executable": "/bin/s\x00h"}, "Invalid Executable: it contains a NUL byte"),
        ({"arguments": "-c 'echo \x00'"}, "Invalid Arguments: they contain a NUL byte"),
        ({"environment": {"A": "x\x00y"}}, "Invalid Environment: variable 'A' cannot be set"),
        ({"arguments": "-c 'unbalanced"}, "Invalid Arguments: No closing quotation"),
    ],
)
def test_unusable_command_fails_the_job_at_once(
    live_server: Any,
    admin: Client,
    matched: Any,
    tmp_path: Path,
    change: dict[str, Any],
    minor: str,
) -> None:
    match = matched(change, Arguments="-c 'echo hi'")
    outcome = run(live_server, match, tmp_path / "w")
    assert (outcome.status, outcome.minor_status, outcome.delivered) == (J.FAILED, minor, True)
    job = admin.job(match.job_id)
    assert (job.status, job.minor_status) == (J.FAILED, minor)


def test_bad_output_path_fails_the_job(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    match = matched(
        {"output_path": "/no/../such\x00dir"},
        Arguments="-c 'echo x > out.dat'",
        OutputData=["out.dat"],
    )
    outcome = run(live_server, match, tmp_path / "w")
    job = admin.job(match.job_id)
    assert (job.status, outcome.status) == (J.FAILED, J.FAILED)
    assert job.minor_status.startswith(("Output data", "Wrapper error")), job.minor_status


def test_bad_output_se_fails_the_job(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    match = matched(
        {"output_se": ["No\x00SuchSE"]},
        Arguments="-c 'echo x > out.dat'",
        OutputData=["out.dat"],
    )
    run(live_server, match, tmp_path / "w")
    job = admin.job(match.job_id)
    assert (job.status, job.minor_status) == (
        J.FAILED,
        "Output data: OutputSE NoSuchSE is not a storage element",
    )


def test_unexpected_error_fails_the_job(
    live_server: Any,
    admin: Client,
    matched: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    # fault injection: the output sandbox step breaks after the payload ran
    monkeypatch.setattr(wrapper, "select_outputs", broken)
    match = matched(Arguments="-c 'echo ran'")
    outcome = run(live_server, match, tmp_path / "w")
    minor = "Wrapper error: RuntimeError: disk on fire"
    assert (outcome.status, outcome.minor_status) == (J.FAILED, minor)
    job = admin.job(match.job_id)
    assert (job.status, job.minor_status) == (J.FAILED, minor)
    assert not (tmp_path / "w" / f"job_{match.job_id}").exists()


def std_out(admin: Client, job_id: int, tmp_path: Path) -> str:
    dest = tmp_path / f"o{job_id}.tar.gz"
    admin.download_output(job_id, dest)
    with tarfile.open(dest) as tar:
        member = tar.extractfile("std.out")
        assert member is not None
        return member.read().decode()


def test_payload_token_only_when_asked(
    live_server: Any, admin: Client, matched: Any, tmp_path: Path
) -> None:
    probe = (
        '-c \'f="$CTAPROD_TOKEN_FILE"; '
        'if [ -n "$f" ]; then echo "$(stat -c %a "$f") $(basename "$f") $CTAPROD_URL '
        '$(wc -c < "$f")"; else echo none; fi; '
        "env | grep -c -e CTAPROD_PILOT_ -e CTAPROD_TOKEN= || true'"
    )
    without = matched(Arguments=probe)
    run(live_server, without, tmp_path / "w")
    assert std_out(admin, without.job_id, tmp_path).split("\n")[:2] == ["none", "0"]
    with_token = matched(Arguments=probe, PayloadToken=True)
    assert with_token.description.payload_token
    outcome = run(live_server, with_token, tmp_path / "w")
    assert outcome.status is J.DONE, outcome.minor_status
    first, count = std_out(admin, with_token.job_id, tmp_path).split("\n")[:2]
    mode, name, url, size = first.split()
    assert (mode, name, url, count) == ("600", TOKEN_FILE, live_server.url, "0")
    assert int(size) == len(with_token.job_token) + 1


def test_final_status_file_is_owner_only(tmp_path: Path) -> None:
    report = StatusReport(job_id=1, status=J.DONE)
    path = keep_final(tmp_path, "job-token", report, None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def waiting(ids: list[int], admin: Client) -> None:
    deadline = time.monotonic() + 15
    while any(admin.job(i).status is not J.WAITING for i in ids):
        assert time.monotonic() < deadline, "jobs never Waiting"
        time.sleep(0.1)


def test_pilot_fails_the_job_and_goes_on(
    live_server: Any, admin: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = (
        admin.submit(documents=[{"Executable": "/bin/sh", "Arguments": f"-c 'echo {n}'"}])[0]
        for n in (1, 2)
    )
    waiting([first, second], admin)
    real, calls = loop.run_job, []

    def flaky(*args: Any, **kwargs: Any) -> Any:  # fault injection: the first job breaks
        calls.append(args[1].job_id)
        if len(calls) == 1:
            raise RuntimeError("wrapper exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "run_job", flaky)
    config = PilotConfig(
        url=live_server.url,
        token=live_server.pilot_token,
        work_dir=tmp_path / "w",
        max_empty_matches=1,
        empty_match_sleep=0.1,
        sandbox="none",
        cpu_time=200000,
    )
    assert loop.run_pilot(config) == loop.EXIT_OK
    assert calls == [first, second]
    failed, done = admin.job(first), admin.job(second)
    assert (failed.status, failed.minor_status) == (
        J.FAILED,
        "Wrapper error: RuntimeError: wrapper exploded",
    )
    assert done.status is J.DONE


def test_pilot_stops_after_repeated_wrapper_errors(
    live_server: Any, admin: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = admin.submit(
        documents=[{"Executable": "/bin/sh", "Arguments": f"-c 'echo {n}'"} for n in range(5)]
    )

    waiting(ids, admin)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("no disk")

    monkeypatch.setattr(loop, "run_job", broken)
    config = PilotConfig(
        url=live_server.url,
        token=live_server.pilot_token,
        work_dir=tmp_path / "w",
        sandbox="none",
        cpu_time=200000,
    )
    assert loop.run_pilot(config) == loop.EXIT_FAILED
    statuses = [admin.job(i).status for i in ids]
    assert statuses.count(J.FAILED) == loop.MAX_WRAPPER_ERRORS
    assert statuses.count(J.WAITING) == len(ids) - loop.MAX_WRAPPER_ERRORS
