"""Jobs run by a real pilot: ``job status --wait`` exit codes, ``job logs``/``output``, pilots."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import Cli

OK = "#!/bin/sh\necho hello out\necho oops >&2\necho data > result.txt\n"
FAIL = "#!/bin/sh\necho failing\nexit 3\n"


def _job(tmp_path: Path, name: str, script: str) -> Path:
    (tmp_path / f"{name}.sh").write_text(script)
    path = tmp_path / f"{name}.jdl"
    path.write_text(
        f'[\n  Executable = "{name}.sh";\n  InputSandbox = {{"{name}.sh"}};\n'
        '  StdOutput = "StdOut";\n  OutputSandbox = {"StdOut", "std.err", "result.txt"};\n'
        "  CPUTime = 300;\n]\n"
    )
    return path


def _submitted(cli: Cli, path: Path) -> int:
    match = re.search(r"submitted 1 job: (\d+)", cli("job", "submit", str(path)).stdout)
    assert match
    return int(match.group(1))


def _pilot_args(cli: Cli, work: Path) -> list[str]:
    return [
        "--url", cli.url, "--token", cli.pilot_token, "--site", "LOCAL.cli.org",
        "--max-empty-matches", "1", "--empty-match-sleep", "0.1", "--work-dir", str(work),
    ]  # fmt: skip


def test_jobs_run_by_a_pilot(cli: Cli, tmp_path: Path) -> None:
    ok = _submitted(cli, _job(tmp_path, "ok", OK))
    bad = _submitted(cli, _job(tmp_path, "bad", FAIL))
    cli("pilot", "run", *_pilot_args(cli, tmp_path / "pilot"))

    mixed = cli("job", "status", str(ok), str(bad), "--wait", "--timeout", "30", code=4)
    assert "2 jobs: 1 Done, 1 Failed" in mixed.stdout
    assert "1 job: 1 Done" in cli("job", "status", str(ok), "--wait", "--timeout", "30").stdout

    logs = cli("job", "logs", str(ok)).stdout
    assert "StdOut" in logs
    assert "hello out" in logs
    assert "oops" in logs
    listed = cli("job", "output", str(ok), "--dir", str(tmp_path / "out")).stdout
    assert "result.txt" in listed
    assert (tmp_path / "out" / str(ok) / "result.txt").read_text() == "data\n"

    pilots = cli("pilot", "list", "--status", "Done").stdout
    assert "LOCAL.cli.org" in pilots
    pilot_id = re.search(r"^(\d+)\tLOCAL\.cli\.org", pilots, re.MULTILINE)
    assert pilot_id
    assert "jobs_done" in cli("pilot", "show", pilot_id.group(1)).stdout
    assert "registered as pilot" in cli("pilot", "logs", pilot_id.group(1)).stdout


def test_submit_wait_follows_the_jobs(cli: Cli, tmp_path: Path) -> None:
    path = _job(tmp_path, "ok", OK)
    pilot = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ctaprod.pilot",
            *_pilot_args(cli, tmp_path / "pilot"),
            "--once-job",
            "--max-empty-matches",
            "300",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The pilot waits (up to 30 s) for one job, runs it and stops.
    try:
        result = cli("job", "submit", str(path), "--json", "--wait", "--timeout", "60",
                     "--interval", "0.5")  # fmt: skip
    finally:
        pilot.wait(60)
    reply = json.loads(result.stdout)
    [job_id] = reply["job_ids"]
    assert reply["statuses"] == {str(job_id): "Done"}


def test_pilot_run_passes_its_options_through(cli: Cli) -> None:
    result = cli("pilot", "run", "--help")
    assert "--max-empty-matches" in result.stdout
