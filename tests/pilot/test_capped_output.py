"""Capped payload output and printable application statuses; real pilots for the end."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from ctaprod.pilot.capped_output import CappedFile, printable_status, trim_file
from tests.pilot.test_loop import run_pilot, submit

pytestmark = pytest.mark.timeout(180)
J = JobStatus
FIT_NOTE = "ctaprod_output_sandbox.txt"  # what users find in an output sandbox


@pytest.fixture
def admin(live_server: Any) -> Iterator[Client]:
    with Client(live_server.url, live_server.admin_token, timeout=30) as client:
        yield client


def members(admin: Client, job_id: int, tmp_path: Path) -> dict[str, bytes]:
    dest = tmp_path / f"out_{job_id}.tar.gz"
    admin.download_output(job_id, dest)
    with tarfile.open(dest) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_small_output_is_kept_whole(tmp_path: Path) -> None:
    f = CappedFile(tmp_path / "out", max_bytes=100)
    for _ in range(10):
        f.write(b"0123456789")
    f.close()
    assert (tmp_path / "out").read_bytes() == b"0123456789" * 10
    assert f.cut == 0


def test_large_output_keeps_head_and_tail_cut_between_lines(tmp_path: Path) -> None:
    f = CappedFile(tmp_path / "out", max_bytes=1000)
    lines = [f"line {i:05d}\n".encode() for i in range(10_000)]  # 11 bytes each
    for line in lines:
        f.write(line)
    f.close()
    text = (tmp_path / "out").read_bytes()
    head, marker, tail = text.split(b"\n[", 1)[0], *text.split(b"\n[", 1)[1].split(b"]\n", 1)
    assert head.startswith(b"line 00000\nline 00001\n")
    assert len(head) <= 500
    assert tail.endswith(b"line 09999\n")
    assert tail.startswith(b"line ")  # the tail starts at a line
    assert len(tail) <= 500
    assert marker.startswith(b"ctaprod: ")
    assert int(marker.split()[1]) == f.cut == 110_000 - len(head) - len(tail)
    f.close()  # idempotent


def test_trim_file_cuts_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"".join(f"{i}\n".encode() for i in range(100_000)))
    size = path.stat().st_size
    cut = trim_file(path, 10_000)
    text = path.read_bytes()
    assert 0 < cut < size
    assert len(text) < 10_200
    assert text.startswith(b"0\n1\n2\n")
    assert text.endswith(b"99998\n99999\n")
    assert f"ctaprod: {cut} bytes".encode() in text
    assert trim_file(path, 1_000_000) == 0


def test_printable_status() -> None:
    text = "ok\x1b[31m red\x00\x07 \ufffd\ufffd done\t now"
    assert printable_status(text) == "ok[31m red done now"
    assert printable_status("é ü ß 日本") == "é ü ß 日本"
    assert printable_status("x" * 1000) == "x" * 252 + "..."
    assert len(printable_status("y" * 300, max_length=10)) == 10
    assert printable_status("\x00\x01\x02") == ""


def test_huge_stdout_job_is_done_with_head_and_tail(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    # ~109 MB of numbers: gzip leaves more than the 10 MB sandbox limit of the whole output
    job_id = submit(admin, Arguments="-c 'seq 1 15000000; echo all printed'")
    code, out = run_pilot(live_server, tmp_path / "w", output_max_bytes=4 * 1024 * 1024)
    assert code == 0, out
    job = admin.job(job_id)
    assert (job.status, job.minor_status, job.application_status) == (
        J.DONE,
        "Execution Complete",
        "all printed",
    )
    stdout = members(admin, job_id, tmp_path)["std.out"]
    assert stdout.startswith(b"1\n2\n3\n")
    assert stdout.endswith(b"14999999\n15000000\nall printed\n")
    assert b" bytes of output cut here" in stdout
    assert len(stdout) < 4 * 1024 * 1024 + 200


def test_binary_stdout_gives_a_printable_application_status(
    live_server: Any, admin: Client, tmp_path: Path
) -> None:
    fancy = submit(admin, Arguments="-c \"printf 'ok \\033[1mbold\\033[0m\\001\\377\\376 end\\n'\"")
    noise = submit(admin, Arguments="-c 'head -c 200000 /dev/urandom'")
    code, out = run_pilot(live_server, tmp_path / "w")
    assert code == 0, out
    assert admin.job(fancy).application_status == "ok [1mbold[0m end"
    status = admin.job(noise).application_status
    assert admin.job(noise).status is J.DONE
    assert status is not None
    assert len(status) <= 255
    assert status.isprintable()


@pytest.fixture
def small_sandboxes(settings):  # type: ignore[no-untyped-def]
    settings.sandboxes.max_bytes = 1024 * 1024
    return settings


def test_output_sandbox_is_made_to_fit(
    small_sandboxes: Any, live_server: Any, admin: Client, tmp_path: Path
) -> None:
    # 3 MB of random data (incompressible) declared as output, over a 1 MB sandbox limit
    job_id = submit(
        admin,
        Arguments="-c 'head -c 3000000 /dev/urandom > big.bin; echo small > small.txt; "
        "head -c 3000000 /dev/urandom | od -An -tx1; echo end'",
        OutputSandbox=["big.bin", "small.txt"],
    )
    code, out = run_pilot(live_server, tmp_path / "w")
    assert code == 0, out
    job = admin.job(job_id)
    assert (job.status, job.application_status) == (J.DONE, "end")
    got = members(admin, job_id, tmp_path)
    assert "big.bin" not in got
    note = got[FIT_NOTE].decode()
    assert "dropped big.bin (3000000 bytes)" in note
    assert "more bytes from std.out" in note  # the hex dump alone was too big as well
    assert got["std.out"].endswith(b"\nend\n")
    assert sum(len(v) for v in got.values()) < 10 * 1024 * 1024
    assert os.path.getsize(tmp_path / f"out_{job_id}.tar.gz") <= 1024 * 1024
