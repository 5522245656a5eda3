"""The local computing element with real processes: states, slots, cancel, restart-safety."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ctaprod.core.errors import Conflict, InvalidInput, NotFound
from ctaprod.core.settings import QueueConfig
from ctaprod.resources.computing import (
    CE_TYPES,
    ComputingElement,
    LocalComputingElement,
    PilotJobStatus,
    PilotSpec,
    create_computing_element,
    register_ce_type,
)

S = PilotJobStatus


def _py(code: str, stamp: str, **env: str) -> PilotSpec:
    return PilotSpec(stamp=stamp, argv=[sys.executable, "-c", code], env=env)


def _wait(ce: ComputingElement, ref: str, wanted: PilotJobStatus, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (state := ce.status([ref])[ref]) != wanted:
        assert time.monotonic() < deadline, f"{ref} is {state}, expected {wanted}"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def _group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except FileNotFoundError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                members.append(int(entry))
    return members


def _pid(ce: LocalComputingElement, stamp: str) -> int:
    return int((ce.work_dir / stamp / "pid").read_text())


def test_states_output_restart_and_cancel(tmp_path: Path) -> None:
    ce = LocalComputingElement("local", tmp_path, max_slots=3)
    specs = [
        _py("print('hello from', __import__('os').environ['GREETING'])", "ok", GREETING="pilot"),
        _py("import sys; print('bad', file=sys.stderr); sys.exit(3)", "bad"),
        _py("import time; time.sleep(60)", "sleeper"),
    ]
    assert ce.submit(specs) == ["ok", "bad", "sleeper"]
    _wait(ce, "ok", S.DONE)
    _wait(ce, "bad", S.FAILED)
    assert ce.status(["sleeper", "nope"]) == {"sleeper": S.RUNNING, "nope": S.UNKNOWN}
    assert "hello from pilot" in ce.output("ok")
    assert "bad" in ce.output("bad")
    assert ce.available_slots() == 2

    # A new instance (the service restarted) sees the same pilots in the same states.
    again = LocalComputingElement("local", tmp_path, max_slots=3)
    refs = ["ok", "bad", "sleeper"]
    assert again.status(refs) == {"ok": S.DONE, "bad": S.FAILED, "sleeper": S.RUNNING}
    assert again.output("ok") == ce.output("ok")

    pgid = _pid(ce, "sleeper")
    again.cancel(["sleeper", "ok", "nope"])  # finished and unknown ones are ignored
    assert _group(pgid) == []
    assert again.status(refs) == {"ok": S.DONE, "bad": S.FAILED, "sleeper": S.ABORTED}
    assert ce.status(refs) == again.status(refs)


def test_slot_limit_keeps_pilots_queued(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    wait_flag = f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.02)"
    ce = LocalComputingElement("local", tmp_path / "ce", max_slots=1)
    ce.submit([_py(wait_flag, "first"), _py("print(1)", "second")])
    ce.submit([_py("print(2)", "third")])
    states = ce.status(["first", "second", "third"])
    assert states == {"first": S.RUNNING, "second": S.QUEUED, "third": S.QUEUED}
    assert ce.available_slots() == 0
    assert ce.output("second") == ""
    assert not (tmp_path / "ce" / "second" / "pid").exists()

    flag.touch()
    _wait(ce, "first", S.DONE)
    _wait(ce, "third", S.DONE)  # started by later status() calls, one at a time
    assert ce.status(["second"]) == {"second": S.DONE}
    second = (tmp_path / "ce" / "second" / "pilot.log").stat().st_mtime_ns
    third = (tmp_path / "ce" / "third" / "pilot.log").stat().st_mtime_ns
    assert second <= third
    assert ce.available_slots() == 1


def test_cancel_queued_and_stubborn_group(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    ce = LocalComputingElement("local", tmp_path / "ce", max_slots=1, kill_grace=0.3)
    ce.submit([_py(stubborn, "stubborn"), _py("print('never')", "waiting")])
    deadline = time.monotonic() + 10
    while not child_pid.exists() or not child_pid.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(child_pid.read_text())
    pgid = _pid(ce, "stubborn")
    ce.cancel(["waiting"])
    assert ce.status(["waiting", "stubborn"]) == {"waiting": S.ABORTED, "stubborn": S.RUNNING}
    ce.cancel(["stubborn"])
    assert _group(pgid) == []
    assert not _running(grandchild)
    assert ce.status(["stubborn", "waiting"]) == {"stubborn": S.ABORTED, "waiting": S.ABORTED}
    assert not (tmp_path / "ce" / "waiting" / "pid").exists()


def test_sigkilled_pilot_is_failed(tmp_path: Path) -> None:
    ce = LocalComputingElement("local", tmp_path, max_slots=2)
    ce.submit([_py("import time; time.sleep(60)", "victim")])
    _wait(ce, "victim", S.RUNNING)
    os.killpg(_pid(ce, "victim"), signal.SIGKILL)
    fresh = LocalComputingElement("local", tmp_path, max_slots=2)
    _wait(fresh, "victim", S.FAILED)  # not its child: sees a zombie or nothing
    _wait(ce, "victim", S.FAILED)
    assert not (tmp_path / "victim" / "exitcode").exists()


def test_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTAPROD_SECRET_KEY", "do-not-leak")
    ce = LocalComputingElement("local", tmp_path, max_slots=1)
    code = "import os; print(sorted(os.environ).count('CTAPROD_SECRET_KEY'), os.getcwd())"
    ce.submit([_py(code, "env")])
    _wait(ce, "env", S.DONE)
    assert ce.output("env").split() == ["0", str(tmp_path / "env")]
    assert oct((tmp_path / "env" / "spec.json").stat().st_mode & 0o777) == "0o600"


def test_validation_and_registry(tmp_path: Path) -> None:
    ce = LocalComputingElement("local", tmp_path, max_slots=0)
    assert ce.submit([_py("pass", "held")]) == ["held"]
    assert ce.status(["held"]) == {"held": S.QUEUED}
    with pytest.raises(Conflict):
        ce.submit([_py("pass", "held")])
    with pytest.raises(InvalidInput):
        ce.submit([_py("pass", "a"), _py("pass", "a")])
    for bad in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(InvalidInput):
            ce.submit([_py("pass", bad)])
    with pytest.raises(InvalidInput):
        ce.submit([PilotSpec(stamp="empty", argv=[], env={})])
    with pytest.raises(NotFound):
        ce.output("missing")
    assert ce.status(["../etc"]) == {"../etc": S.UNKNOWN}

    made = create_computing_element("q", QueueConfig(max_total=2, options={"slots": 5}), tmp_path)
    assert isinstance(made, LocalComputingElement)
    assert made.max_slots == 5
    made = create_computing_element("q", QueueConfig(max_total=2), tmp_path / "q2")
    assert isinstance(made, LocalComputingElement)
    assert made.max_slots == 2
    with pytest.raises(InvalidInput, match="local"):
        create_computing_element("q", QueueConfig(ce_type="htcondor"), tmp_path)

    register_ce_type(
        "Fake", lambda name, config, work_dir: LocalComputingElement(name, work_dir, max_slots=1)
    )
    try:
        assert create_computing_element("f", QueueConfig(ce_type="fake"), tmp_path).name == "f"
    finally:
        del CE_TYPES["fake"]
