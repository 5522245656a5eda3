"""New users' home directories, seen from the CLI: made by ``admin user add``, owned by them,
and where their jobs' OutputData lands by default."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import Cli
from tests.cli.test_pilot_run import _pilot_args

SCRIPT = "#!/bin/sh\necho made by $CTAPROD_JOB_ID > result.txt\n"


def _long(cli: Cli, path: str) -> dict[str, list[str]]:
    """``dm ls -l`` rows by name: kind, owner, group, size, time, name."""
    rows = [line.split("\t") for line in cli("dm", "ls", "-l", path).stdout.splitlines()]
    return {row[-1].rstrip("/"): row for row in rows}


def _token(cli: Cli, user: str, group: str) -> str:
    return str(cli("admin", "token", "issue", user, group).stdout.strip())


def test_user_add_makes_a_home_owned_by_the_user(cli: Cli, tmp_path: Path) -> None:
    cli("admin", "group", "add", "lst_users", "--property", "NormalUser")
    cli("admin", "user", "add", "carol", "--group", "ctao_user")
    cli("admin", "user", "add", "dave", "--group", "lst_users")
    assert _long(cli, "/ctao/user/c")["carol"][:3] == ["d", "carol", "ctao_user"]
    assert _long(cli, "/ctao/user/d")["dave"][:3] == ["d", "dave", "lst_users"]
    assert _long(cli, "/ctao/user")["c"][:3] == ["d", "admin", "ctao_admin"]
    assert _long(cli, "/ctao/user")["d"][:3] == ["d", "admin", "ctao_admin"]

    data = tmp_path / "f.dat"
    data.write_bytes(b"x" * 10)
    carol, dave = _token(cli, "carol", "ctao_user"), _token(cli, "dave", "lst_users")
    put = ("dm", "put", str(data))
    cli("--token", carol, *put, "/ctao/user/c/carol/f.dat", "--se", "LOCAL-DISK")
    cli("--token", dave, *put, "/ctao/user/d/dave/f.dat", "--se", "LOCAL-DISK")
    refused = cli("--token", dave, *put, "/ctao/user/c/carol/g.dat", "--se", "LOCAL-DISK", code=1)
    assert "(HTTP 403)" in refused.stderr
    refused = cli("--token", carol, *put, "/ctao/user/x/f.dat", "--se", "LOCAL-DISK", code=1)
    assert "(HTTP 403)" in refused.stderr


def test_new_users_jobs_write_outputs_in_their_home(cli: Cli, tmp_path: Path) -> None:
    """Two users of different groups: before homes, the second one's outputs were refused
    (``/ctao/user`` belonged to the first one's job)."""
    cli("admin", "group", "add", "lst_users", "--property", "NormalUser")
    cli("admin", "user", "add", "erin", "--group", "ctao_user")
    cli("admin", "user", "add", "fred", "--group", "lst_users")
    (tmp_path / "job.sh").write_text(SCRIPT)
    jdl = tmp_path / "job.jdl"
    jdl.write_text(
        '[\n  Executable = "job.sh";\n  InputSandbox = {"job.sh"};\n  CPUTime = 300;\n'
        '  OutputData = {"result.txt"};\n  OutputSE = {"LOCAL-DISK"};\n]\n'
    )
    ids = {}
    for user, group in (("erin", "ctao_user"), ("fred", "lst_users")):
        out = cli("--token", _token(cli, user, group), "job", "submit", str(jdl)).stdout
        match = re.search(r"submitted 1 job: (\d+)", out)
        assert match, out
        ids[user] = match.group(1)
    cli("pilot", "run", *_pilot_args(cli, tmp_path / "pilot"))
    done = cli("job", "status", *ids.values(), "--wait", "--timeout", "60")
    assert "2 jobs: 2 Done" in done.stdout
    for user, job_id in ids.items():
        home = f"/ctao/user/{user[0]}/{user}"
        row = _long(cli, f"{home}/{job_id}")["result.txt"]
        assert row[1] == user
