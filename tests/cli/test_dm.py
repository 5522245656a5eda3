"""``ctaprod dm`` catalog commands against a live server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli


def write_regs(path: Path, lfns: list[str], jsonl: bool, **extra: object) -> Path:
    docs = [{"lfn": lfn, "size": 5, "checksum": "a1", **extra} for lfn in lfns]
    if jsonl:
        path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    else:
        path.write_text(json.dumps(docs))
    return path


def test_mkdir_register_ls_replicas(cli: Cli, tmp_path: Path) -> None:
    assert "/vo/data" in cli("dm", "mkdir", "/vo/data").stdout
    regs = write_regs(tmp_path / "r.jsonl", ["/vo/data/b", "/vo/data/a"], jsonl=True)
    assert "registered 2 files" in cli("dm", "register", "--no-verify", str(regs)).stdout
    cli("dm", "mkdir", "/vo/data/sub")
    assert cli("dm", "ls", "/vo/data").stdout.split() == ["sub/", "a", "b"]
    long = cli("dm", "ls", "-l", "/vo/data").stdout.splitlines()
    assert long[0].startswith("d\t")
    assert long[1].startswith("-\t")
    assert long[1].split("\t")[3] == "5"
    assert long[1].endswith("\ta")
    assert cli("dm", "ls", "/vo/data/a").stdout.strip() == "/vo/data/a"
    table = cli("dm", "replicas", "/vo/data/a").stdout
    assert "/vo/data/a" in table
    assert "000000a1" in table
    result = cli("dm", "replicas", "/vo/data/a", "/vo/data/zz", code=1)
    assert "/vo/data/zz" in result.stderr


def test_ancestry_commands(cli: Cli, tmp_path: Path) -> None:
    cli("dm", "register", "--no-verify", str(write_regs(tmp_path / "p.json", ["/g/raw"], False)))
    child = write_regs(tmp_path / "c.json", ["/g/dl1"], jsonl=False, parents=["/g/raw"])
    cli("dm", "register", "--no-verify", str(child))
    grand = write_regs(tmp_path / "g.json", ["/g/dl2"], jsonl=False, parents=["/g/dl1"])
    cli("dm", "register", "--no-verify", str(grand))
    out = cli("dm", "ancestors", "/g/dl2", "--depth", "2").stdout
    assert "/g/dl1" in out
    assert "/g/raw" in out
    out = cli("dm", "descendants", "/g/raw").stdout
    assert "/g/dl1" in out
    assert "/g/dl2" not in out


def test_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    result = cli("dm", "ls", "/nowhere", code=1)
    assert "Error:" in result.stderr
    assert "/nowhere" in result.stderr
    result = cli("dm", "mkdir", "/a//b", code=1)
    assert "invalid LFN" in result.stderr
    bad = write_regs(tmp_path / "bad.json", ["relative/x"], jsonl=False)
    result = cli("dm", "register", str(bad), code=1)
    assert "relative/x" in result.stderr
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    result = cli("dm", "register", str(tmp_path / "broken.jsonl"), code=1)
    assert "broken.jsonl:1" in result.stderr
    conflict = write_regs(tmp_path / "c1.json", ["/x/f"], jsonl=False)
    cli("dm", "register", "--no-verify", str(conflict))
    conflict.write_text(json.dumps([{"lfn": "/x/f", "size": 6, "checksum": "a1"}]))
    result = cli("dm", "register", "--no-verify", str(conflict), code=1)
    assert "/x/f" in result.stderr
    assert "HTTP 409" in result.stderr
