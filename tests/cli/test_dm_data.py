"""``ctaprod dm put | get | rm | replicate`` against a live server and the embedded SEs."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import typer

from ctaprod.cli.dm_data import parse_meta
from ctaprod.logic import catalog
from tests.cli.conftest import Cli

LFN = "/ctao/user/admin/cli/file.dat"
DATA = b"0123456789" * 50_000


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def se_file(cli: Cli, se: str, lfn: str = LFN) -> Path:
    return Path(cli.services.ctx.settings.storage_element(se).base_path) / lfn.lstrip("/")


def test_put_get_replicate_rm(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "file.dat"
    local.write_bytes(DATA)
    out = cli("dm", "put", str(local), LFN).stdout
    assert f"Stored {LFN} on LOCAL-DISK ({len(DATA)} bytes, ADLER32 {adler(DATA)})" in out
    assert "already in the catalog" in cli("dm", "put", str(local), LFN, code=1).stderr
    down = tmp_path / "down"
    down.mkdir()
    assert "from LOCAL-DISK" in cli("dm", "get", LFN, str(down)).stdout
    assert (down / "file.dat").read_bytes() == DATA
    monkeypatch.chdir(down)
    (down / "file.dat").unlink()
    cli("dm", "get", LFN, "--site", "LOCAL.localhost.org")
    assert (down / "file.dat").read_bytes() == DATA
    out = cli("dm", "replicate", LFN, "/ctao/missing", "--se", "LOCAL-FAILOVER", code=1)
    assert f"Replicated LOCAL-FAILOVER: {LFN}" in out.stdout
    assert "/ctao/missing" in out.stderr
    assert "1 of 2 files could not be replicated" in out.stderr
    assert "Already on" in cli("dm", "replicate", LFN, "--se", "LOCAL-FAILOVER").stdout
    ctx = cli.services.ctx
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["LOCAL-DISK", "LOCAL-FAILOVER"]
    assert "from LOCAL-DISK" in cli("dm", "rm", LFN, "--se", "LOCAL-DISK").stdout
    assert not se_file(cli, "LOCAL-DISK").exists()
    assert "last replica" in cli("dm", "rm", LFN, "--se", "LOCAL-FAILOVER", code=1).stderr
    assert "(LOCAL-FAILOVER)" in cli("dm", "rm", LFN).stdout
    assert catalog.get_files(ctx, [LFN]) == {}
    assert not se_file(cli, "LOCAL-FAILOVER").exists()
    assert "no file" in cli("dm", "get", LFN, str(tmp_path / "x"), code=1).stderr


def test_damaged_download_is_refused(cli: Cli, tmp_path: Path) -> None:
    local = tmp_path / "file.dat"
    local.write_bytes(DATA)
    cli("dm", "put", str(local), LFN, "--se", "LOCAL-FAILOVER")
    stored = se_file(cli, "LOCAL-FAILOVER")
    stored.write_bytes(b"X" + DATA[1:])  # same size, other bytes
    dest = tmp_path / "out.dat"
    err = cli("dm", "get", LFN, str(dest), code=1).stderr
    assert "damaged" in err
    assert not dest.exists()
    assert list(tmp_path.glob(".out.dat*")) == []


def test_put_refusals(cli: Cli, tmp_path: Path) -> None:
    local = tmp_path / "file.dat"
    local.write_bytes(DATA)
    err = cli("dm", "put", str(local), LFN, "--meta", "nosuchfield=3", code=1).stderr
    assert "nosuchfield" in err
    assert cli("dm", "put", str(local), LFN, "--meta", "novalue", code=2).exit_code == 2
    assert cli("dm", "put", str(tmp_path / "none"), LFN, code=2).exit_code == 2
    cli("se", "ban", "LOCAL-DISK", "--write", "--reason", "full")
    assert "full" in cli("dm", "put", str(local), LFN, code=1).stderr
    assert catalog.get_files(cli.services.ctx, [LFN]) == {}
    assert not se_file(cli, "LOCAL-DISK").exists()


def test_parse_meta() -> None:
    assert parse_meta(["a=1", "b=x", "c=2.5", 'd="7"', "e=a=b"]) == {
        "a": 1,
        "b": "x",
        "c": 2.5,
        "d": "7",
        "e": "a=b",
    }
    with pytest.raises(typer.BadParameter):
        parse_meta(["=1"])
