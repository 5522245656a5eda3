"""``--json`` / ``-o json`` on every list and show command, plain tables off a terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer.main

from ctaprod.cli.main import app
from tests.cli.conftest import Cli

BOX = set("│┃─━┏┓┗┛┡┩└┘├┤┬┴┼╇╈╭╮╰╯")


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, command in group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):  # a group (typer's own click)
            out.update(_commands(command, path))
        else:
            out[" ".join(path)] = command
    return out


def test_every_list_and_show_command_takes_json() -> None:
    commands = _commands(typer.main.get_group(app))
    listings = {
        path: cmd
        for path, cmd in commands.items()
        if path.split()[-1] in {"list", "show", "status", "summary", "history", "whoami"}
        or path
        in {
            "dm ls",
            "dm replicas",
            "dm find",
            "dm ancestors",
            "dm descendants",
            "dm meta get",
            "dm meta fields",
            "dm dataset files",
        }
    }
    assert len(listings) >= 25
    for path, cmd in listings.items():
        options = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        assert {"--json", "--output", "-o"} <= options, f"ctaprod {path} lacks --json / -o"


def _json(cli: Cli, *args: str) -> object:
    result = cli(*args)
    return json.loads(result.stdout)


def test_json_is_the_api_models(cli: Cli, tmp_path: Path) -> None:
    me = _json(cli, "whoami", "--json")
    assert me == {
        "user": "admin",
        "group": "ctao_admin",
        "kind": "user",
        "properties": me["properties"],  # type: ignore[index]
    }
    assert _json(cli, "whoami", "-o", "json") == me
    users = _json(cli, "admin", "user", "list", "--json")
    assert isinstance(users, list)
    assert {u["name"] for u in users} >= {"admin", "pilot"}  # type: ignore[index]
    assert set(users[0]) == {"name", "email", "enabled", "groups"}  # type: ignore[index]
    groups = _json(cli, "admin", "group", "list", "-o", "json")
    assert {"name", "properties", "share", "description"} == set(groups[0])  # type: ignore[index]
    tokens = _json(cli, "admin", "token", "list", "--json")
    assert {"jti", "user", "group", "kind", "issued_at", "expires_at"} <= set(tokens[0])  # type: ignore[index]
    ses = _json(cli, "se", "list", "--json")
    assert [se["name"] for se in ses] == ["LOCAL-DISK", "LOCAL-FAILOVER"]  # type: ignore[index]
    shown = _json(cli, "se", "show", "LOCAL-DISK", "--json")
    assert shown["element"]["name"] == "LOCAL-DISK"  # type: ignore[index]
    assert shown["history"] == []  # type: ignore[index]
    assert _json(cli, "job", "list", "--json") == []
    assert _json(cli, "request", "list", "--json") == []
    assert _json(cli, "pilot", "list", "--json") == []
    assert _json(cli, "admin", "site", "list", "--json") == []

    cli("dm", "meta", "add-field", "particle", "string")
    data = tmp_path / "f.dat"
    data.write_bytes(b"12345")
    lfn = "/ctao/user/a/admin/json/f.dat"
    cli("dm", "put", str(data), lfn, "--se", "LOCAL-DISK")
    cli("dm", "meta", "set", lfn, "particle=gamma")
    listing = _json(cli, "dm", "ls", "-l", "/ctao/user/a/admin/json", "--json")
    assert [(e["name"], e["kind"], e["size"]) for e in listing] == [("f.dat", "file", 5)]  # type: ignore[index]
    replicas = _json(cli, "dm", "replicas", lfn, "--json")
    assert replicas[0]["lfn"] == lfn  # type: ignore[index]
    assert replicas[0]["replicas"] == ["LOCAL-DISK"]  # type: ignore[index]
    assert _json(cli, "dm", "find", "particle=gamma", "--json") == [lfn]
    assert _json(cli, "dm", "find", "particle=proton", "--json") == []
    assert _json(cli, "dm", "find", "particle=gamma", "--count", "--json")["count"] == 1  # type: ignore[index]
    meta = _json(cli, "dm", "meta", "get", lfn, "--json")
    assert [(v["field"], v["value"]) for v in meta["effective"]] == [("particle", "gamma")]  # type: ignore[index]
    fields = _json(cli, "dm", "meta", "fields", "--json")
    assert [f["name"] for f in fields] == ["particle", "prod_step_id"]  # type: ignore[index]
    assert _json(cli, "dm", "ancestors", lfn, "--json") == []
    cli("dm", "dataset", "create", "gammas", "particle=gamma", "--frozen")
    assert _json(cli, "dm", "dataset", "show", "gammas", "--json")["file_count"] == 1  # type: ignore[index]
    assert [d["name"] for d in _json(cli, "dm", "dataset", "list", "--json")] == ["gammas"]  # type: ignore[index]
    assert _json(cli, "dm", "dataset", "files", "gammas", "--json") == [lfn]


def test_tables_are_plain_off_a_terminal(cli: Cli) -> None:
    """CliRunner's stdout is not a terminal: header, then one tab-separated line per row."""
    cli("admin", "user", "add", "carol", "--group", "ctao_user", "--email", "c@cta.org")
    out = cli("admin", "user", "list").stdout
    assert not BOX & set(out)
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0].split("\t") == ["User", "Email", "Enabled", "Groups"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["carol"] == ["carol", "c@cta.org", "yes", "ctao_user"]
    assert rows["pilot"] == ["pilot", "", "yes", "ctao_pilot"]  # empty cells keep their tab
    shown = cli("se", "show", "LOCAL-DISK")
    assert "Name\tLOCAL-DISK" in shown.stdout.splitlines()
    assert not BOX & set(shown.stdout)
    assert "LOCAL-DISK" in shown.stderr  # the title, off stdout
