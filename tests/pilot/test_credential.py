"""The pilot credential: handed over on a pipe by the Local CE, kept in memory by the pilot,
never in an environment, argv or file that a payload could read."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pytest

from ctaprod.core.errors import InvalidInput
from ctaprod.pilot.__main__ import TOKEN_FD_VARIABLE, TOKEN_VARIABLE, build_parser, read_credential
from ctaprod.resources.computing import LocalComputingElement, PilotJobStatus, PilotSpec

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.credential-for-the-test"
# A stand-in pilot: reads the credential as the real one does, shows what it holds.
READER = """
import os
fd = int(os.environ.pop("CTAPROD_PILOT_TOKEN_FD"))
data = os.read(fd, 65536)
os.close(fd)
print("read", len(data))
print("env", sorted(k for k in os.environ if k.startswith("CTAPROD")))
"""


def _wait(ce: LocalComputingElement, ref: str, wanted: PilotJobStatus) -> None:
    deadline = time.monotonic() + 15
    while (state := ce.status([ref])[ref]) != wanted:
        assert time.monotonic() < deadline, f"{ref} is {state}, expected {wanted}"
        time.sleep(0.05)


def _grep(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_local_ce_hands_the_credential_on_a_pipe(tmp_path: Path) -> None:
    ce = LocalComputingElement("q", tmp_path / "ce", max_slots=2)
    spec = PilotSpec("p1", [sys.executable, "-c", READER], {"A": "1"}, credential=SECRET)
    assert SECRET not in repr(spec)
    (ref,) = ce.submit([spec])
    _wait(ce, ref, PilotJobStatus.DONE)
    log = ce.output(ref).splitlines()
    assert log[0] == f"read {len(SECRET)}"
    assert log[1] == "env ['CTAPROD_PILOT_STAMP']"  # the fd variable was popped, no token
    assert _grep(tmp_path / "ce", SECRET) == []  # not in spec.json nor anywhere else
    assert ce._credentials == {}  # handed over: the CE forgot it


def test_a_queued_pilot_whose_ce_restarted_is_aborted(tmp_path: Path) -> None:
    first = LocalComputingElement("q", tmp_path / "ce", max_slots=0)  # queued, not started
    (ref,) = first.submit([PilotSpec("p2", [sys.executable, "-c", READER], credential=SECRET)])
    assert first.status([ref])[ref] is PilotJobStatus.QUEUED
    again = LocalComputingElement("q", tmp_path / "ce", max_slots=1)  # e.g. after a restart
    assert again.status([ref])[ref] is PilotJobStatus.ABORTED
    assert "lost its credential" in again.output(ref)
    assert _grep(tmp_path / "ce", SECRET) == []


def test_a_credential_in_env_is_refused(tmp_path: Path) -> None:
    ce = LocalComputingElement("q", tmp_path / "ce", max_slots=1)
    with pytest.raises(InvalidInput, match="not in env"):
        ce.submit([PilotSpec("p3", ["true"], {"CTAPROD_PILOT_TOKEN": SECRET})])


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_pilot_reads_the_descriptor_and_closes_it() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, SECRET.encode() + b"\n")
    os.close(write_end)
    environ = {TOKEN_FD_VARIABLE: str(read_end), "OTHER": "x"}
    token, warnings = read_credential(_args(), environ)
    assert (token, warnings, environ) == (SECRET, [], {"OTHER": "x"})
    with pytest.raises(OSError):
        os.fstat(read_end)  # closed


def test_environment_credential_is_scrubbed_with_a_warning() -> None:
    environ = {TOKEN_VARIABLE: SECRET}
    token, warnings = read_credential(_args(), environ)
    assert (token, environ) == (SECRET, {})
    assert "readable by payloads" in warnings[0]


def test_token_file_may_be_deleted(tmp_path: Path) -> None:
    path = tmp_path / "cred"
    path.write_text(SECRET + "\n")
    token, _ = read_credential(_args("--token-file", str(path)), {})
    assert token == SECRET
    assert path.exists()
    token, _ = read_credential(_args("--token-file", str(path), "--delete-token-file"), {})
    assert token == SECRET
    assert not path.exists()


def test_token_option_wins_with_a_warning() -> None:
    environ = {TOKEN_VARIABLE: "other"}
    token, warnings = read_credential(_args("--token", SECRET), environ)
    assert (token, environ) == (SECRET, {})
    assert "--token" in warnings[0]
