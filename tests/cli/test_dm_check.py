"""``ctaprod dm check``: the summary table, the LFN lists and the exit code."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cli.conftest import Cli

TOP = "/ctao/user/admin/check"
STALE = f"{TOP}/.s.dat~ctaprod-upload-{'f' * 32}"


def se_file(cli: Cli, lfn: str, se: str = "LOCAL-DISK") -> Path:
    return Path(cli.services.ctx.settings.storage_element(se).base_path) / lfn.lstrip("/")


def test_check_reports_and_exit_code(cli: Cli, tmp_path: Path) -> None:
    local = tmp_path / "file.dat"
    local.write_bytes(b"payload" * 100)
    for name in ("a.dat", "b.dat", "c.dat"):
        cli("dm", "put", str(local), f"{TOP}/{name}")
    out = cli("dm", "check", TOP, "--se", "LOCAL-DISK", "--checksums").stdout
    assert f"{TOP} on LOCAL-DISK: consistent" in out
    assert "files on storage" in out

    se_file(cli, f"{TOP}/a.dat").unlink()
    se_file(cli, f"{TOP}/b.dat").write_bytes(b"short")
    se_file(cli, f"{TOP}/c.dat").write_bytes(b"PAYLOAD" + b"payload" * 99)
    se_file(cli, f"{TOP}/extra/orphan.dat").parent.mkdir()
    se_file(cli, f"{TOP}/extra/orphan.dat").write_bytes(b"o")
    se_file(cli, f"{TOP}/extra/orphan2.dat").write_bytes(b"o")
    se_file(cli, STALE).write_bytes(b"s")
    os.utime(se_file(cli, STALE), (time.time() - 2 * 86_400,) * 2)

    result = cli("dm", "check", TOP, "--se", "LOCAL-DISK", code=1)
    out = result.stdout
    rows = {
        cells[0]: cells[1]
        for cells in (line.split("\t") for line in out.splitlines())
        if len(cells) == 2 and cells[0] != "Kind"
    }
    counts = {kind.strip(): value.strip() for kind, value in rows.items()}
    assert counts == {
        "files on storage": "5",
        "replica entries": "3",
        "missing_on_storage": "1",
        "orphans_on_storage": "2",
        "stale_uploads": "1",
        "size_mismatch": "1",
    }, out
    assert "checksum_mismatch" not in out  # not asked for
    assert f"missing_on_storage (1):\n  {TOP}/a.dat" in out
    assert f"size_mismatch (1):\n  {TOP}/b.dat" in out
    assert f"stale_uploads (1):\n  {STALE}" in out
    assert "is not consistent with the catalog" in result.stderr

    out = cli(
        "dm", "check", TOP, "--se", "LOCAL-DISK", "--checksums", "--limit", "1", code=1
    ).stdout
    assert f"checksum_mismatch (1):\n  {TOP}/c.dat" in out
    assert "orphans_on_storage (2, first 1 shown):" in out

    out = cli("dm", "check", TOP, "--se", "LOCAL-DISK", "--remove-stale-uploads", code=1).stdout
    assert f"removed_stale_uploads (1):\n  {STALE}" in out
    assert not se_file(cli, STALE).exists()
    assert se_file(cli, f"{TOP}/extra/orphan.dat").exists()


def test_check_refusals(cli: Cli) -> None:
    assert "NO-SE" in cli("dm", "check", TOP, "--se", "NO-SE", code=1).stderr
    assert "absolute" in cli("dm", "check", "relative", "--se", "LOCAL-DISK", code=1).stderr
    assert cli("dm", "check", TOP, code=2).exit_code == 2  # --se is required
