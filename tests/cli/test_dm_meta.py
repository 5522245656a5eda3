"""``ctaprod dm meta | find | dataset`` against a live server."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli
from tests.db.test_metadata_tree import Tree

BASE = "/ctao/MC/PROD6/Paranal"


def test_meta_find_and_datasets(cli: Cli, tmp_path: Path) -> None:
    cli("dm", "meta", "add-field", "particle", "string")
    cli("dm", "meta", "add-field", "thetaP", "float", "--description", "zenith")
    cli("dm", "meta", "add-field", "runNumber", "int")
    out = cli("dm", "meta", "fields").stdout
    assert "thetaP" in out
    assert "zenith" in out
    with cli.services.ctx.db.write() as conn:
        Tree(owner="admin").add_files(conn, [f"{BASE}/gamma/f{i}" for i in range(3)])
    cli("dm", "meta", "set", BASE, "particle=gamma", "thetaP=20")
    cli("dm", "meta", "set", f"{BASE}/gamma/f1", "runNumber=7", "thetaP=40")
    out = cli("dm", "meta", "get", f"{BASE}/gamma/f1").stdout
    assert "(own)" in out
    assert BASE in out
    assert cli("dm", "find", "particle=gamma", "thetaP<30").stdout.splitlines() == [
        f"{BASE}/gamma/f0",
        f"{BASE}/gamma/f2",
    ]
    assert "3 files, 300 bytes" in cli("dm", "find", "--count").stdout
    qfile = tmp_path / "q.yaml"
    qfile.write_text("runNumber: 7\n")
    assert cli("dm", "find", "--file", str(qfile)).stdout.split() == [f"{BASE}/gamma/f1"]
    cli("dm", "dataset", "create", "ds", "thetaP=20", "--frozen")
    assert "Frozen" in cli("dm", "dataset", "list").stdout
    assert "200" in cli("dm", "dataset", "show", "ds").stdout
    assert len(cli("dm", "dataset", "files", "ds").stdout.split()) == 2
    err = cli("dm", "dataset", "freeze", "ds", code=1).stderr
    assert "already frozen" in err
    cli("dm", "dataset", "delete", "ds")


def test_errors_are_one_line(cli: Cli) -> None:
    cli("dm", "meta", "add-field", "particle", "string")
    err = cli("dm", "find", "partcle=gamma", code=1).stderr
    assert "did you mean 'particle'" in err
    assert "Traceback" not in err
    assert "unknown metadata type" in cli("dm", "meta", "add-field", "x", "complex", code=1).stderr
    assert cli("dm", "meta", "set", "/nope", "particle=x", code=1).stderr.startswith("Error")
    assert cli("dm", "meta", "set", "/nope", "particle", code=2).exit_code == 2
