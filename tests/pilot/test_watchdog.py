"""Tests of the payload watchdog with real subprocesses."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ctaprod.pilot.watchdog import (
    Limits,
    Outcome,
    PayloadResult,
    Usage,
    last_line,
    run_payload,
    tail,
)

pytestmark = pytest.mark.timeout(60)

PY = sys.executable


def run(tmp_path: Path, argv: list[str], **kwargs: Any) -> PayloadResult:
    kwargs.setdefault("limits", Limits(wall_seconds=20))
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("kill_grace", 1.0)
    return run_payload(
        argv,
        cwd=tmp_path,
        env=None,
        stdout_path=tmp_path / "stdout.txt",
        stderr_path=tmp_path / "stderr.txt",
        **kwargs,
    )


def is_gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(is_gone(p) for p in procs):
            return True
        time.sleep(0.05)
    return all(is_gone(p) for p in procs)


def pids_from(path: Path) -> list[psutil.Process]:
    """psutil handles (identity-checked later) for the pids a payload wrote to a file."""
    procs = []
    for word in path.read_text().split():
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(int(word)))
    return procs


def test_exit_zero_with_output(tmp_path: Path) -> None:
    code = "import sys; print('hello out'); print('hello err', file=sys.stderr)"
    result = run(tmp_path, [PY, "-c", code])
    assert result.outcome is Outcome.COMPLETED
    assert result.exit_code == 0
    assert result.message == "exited with code 0"
    assert (tmp_path / "stdout.txt").read_text() == "hello out\n"
    assert (tmp_path / "stderr.txt").read_text() == "hello err\n"
    assert result.usage.wall_seconds > 0


def test_exit_code_3_and_env_and_cwd(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "GREETING": "bonjour"}
    result = run_payload(
        ["sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'],
        cwd=tmp_path,
        env=env,
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        limits=Limits(),
        poll_interval=0.05,
    )
    assert result.outcome is Outcome.COMPLETED
    assert result.exit_code == 3
    assert result.message == "exited with code 3"
    assert (tmp_path / "out").read_text() == f"bonjour from {tmp_path}\n"
    assert (tmp_path / "err").read_text() == "oops\n"


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    result = run(tmp_path, [PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert result.exit_code == 0
    assert (tmp_path / "stdout.txt").read_text() == "''\n"


def test_wall_limit_kills_grandchildren(tmp_path: Path) -> None:
    script = "sleep 30 & echo $! > pids; sleep 30 & echo $! >> pids; echo $$ >> pids; wait"
    seen: list[psutil.Process] = []

    def heartbeat(usage: Usage) -> bool:
        if not seen and (tmp_path / "pids").exists():
            seen.extend(pids_from(tmp_path / "pids"))
        return False

    result = run(
        tmp_path,
        ["sh", "-c", script],
        limits=Limits(wall_seconds=1.0),
        heartbeat=heartbeat,
        heartbeat_interval=0.3,
    )
    assert result.outcome is Outcome.WALL_LIMIT
    assert result.message.startswith("wall-clock limit of 1s exceeded")
    assert result.exit_code == -signal.SIGTERM
    assert 1.0 <= result.usage.wall_seconds < 5.0
    assert len(seen) == 3
    assert wait_gone(seen, timeout=0.5)


def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    # ignored signals are inherited through exec, so the sleep ignores SIGTERM too
    script = "trap '' TERM; sleep 30 & echo $! > pids; wait"
    start = time.monotonic()
    result = run(tmp_path, ["sh", "-c", script], limits=Limits(wall_seconds=0.5), kill_grace=0.5)
    assert result.outcome is Outcome.WALL_LIMIT
    assert result.exit_code == -signal.SIGKILL
    assert "SIGKILL" in result.message
    assert time.monotonic() - start < 5.0
    assert wait_gone(pids_from(tmp_path / "pids"), timeout=1.0)


def test_leftover_background_processes_are_killed(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", "sleep 30 & echo $! > pids"])
    assert result.outcome is Outcome.COMPLETED
    assert result.exit_code == 0
    leftovers = pids_from(tmp_path / "pids")
    assert wait_gone(leftovers, timeout=1.0)


def test_cpu_limit(tmp_path: Path) -> None:
    result = run(
        tmp_path, [PY, "-c", "while True: pass"], limits=Limits(cpu_seconds=1.0, wall_seconds=20)
    )
    assert result.outcome is Outcome.CPU_LIMIT
    assert result.message.startswith("CPU time limit of 1s exceeded")
    assert result.usage.cpu_seconds > 1.0
    assert result.usage.wall_seconds < 5.0


def test_cpu_of_finished_children_is_counted(tmp_path: Path) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    result = run(tmp_path, ["sh", "-c", f'"{PY}" -c "{burn}"; sleep 0.2'])
    assert result.outcome is Outcome.COMPLETED, result.message
    assert result.exit_code == 0
    assert result.usage.cpu_seconds >= 0.5


def test_memory_limit(tmp_path: Path) -> None:
    code = "import time\nx = b'x' * (300 * 1024 * 1024)\ntime.sleep(30)"
    limit = 100 * 1024 * 1024
    result = run(tmp_path, [PY, "-c", code], limits=Limits(memory_bytes=limit, wall_seconds=20))
    assert result.outcome is Outcome.MEMORY_LIMIT
    assert result.message.startswith("memory limit of")
    assert result.usage.peak_rss_bytes > limit
    assert result.usage.wall_seconds < 10.0


def test_heartbeat_growing_usage_and_kill_on_request(tmp_path: Path) -> None:
    calls: list[Usage] = []

    def heartbeat(usage: Usage) -> bool:
        calls.append(usage)
        return len(calls) == 4

    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    code += "time.sleep(30)"
    result = run(tmp_path, [PY, "-c", code], heartbeat=heartbeat, heartbeat_interval=0.2)
    assert result.outcome is Outcome.KILLED
    assert result.message.startswith("killed on request")
    assert len(calls) == 4
    assert calls[0].wall_seconds >= 0.2  # first call after one interval
    walls = [u.wall_seconds for u in calls]
    assert walls == sorted(walls)
    assert len(set(walls)) == 4
    cpus = [u.cpu_seconds for u in calls]
    assert cpus == sorted(cpus)
    assert cpus[-1] > 0
    assert all(u.rss_bytes > 0 for u in calls)
    assert all(u.peak_rss_bytes >= u.rss_bytes for u in calls)
    assert result.usage.wall_seconds >= walls[-1]


def test_heartbeat_exception_is_tolerated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def heartbeat(usage: Usage) -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("server unreachable")

    caplog.set_level(logging.ERROR, logger="ctaprod.pilot.watchdog")
    result = run(
        tmp_path,
        [PY, "-c", "import time; time.sleep(0.8)"],
        heartbeat=heartbeat,
        heartbeat_interval=0.1,
    )
    assert result.outcome is Outcome.COMPLETED
    assert result.exit_code == 0
    assert calls >= 3
    records = [r for r in caplog.records if r.name == "ctaprod.pilot.watchdog"]
    assert records
    assert records[0].exc_info is not None
    assert "server unreachable" in caplog.text


def test_stop_event(tmp_path: Path) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        result = run(tmp_path, ["sleep", "30"], stop_event=stop, poll_interval=0.5)
    finally:
        timer.cancel()
    assert result.outcome is Outcome.KILLED
    assert result.exit_code == -signal.SIGTERM
    assert result.usage.wall_seconds < 3.0


def test_start_failed_missing_executable(tmp_path: Path) -> None:
    result = run(tmp_path, [str(tmp_path / "no-such-program"), "arg"])
    assert result.outcome is Outcome.START_FAILED
    assert result.exit_code is None
    assert "no-such-program" in result.message
    assert "No such file" in result.message


def test_start_failed_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = run(tmp_path, [str(script)])
    assert result.outcome is Outcome.START_FAILED
    assert result.exit_code is None
    assert "Permission denied" in result.message


def test_start_failed_empty_command(tmp_path: Path) -> None:
    result = run(tmp_path, [])
    assert result.outcome is Outcome.START_FAILED
    assert result.exit_code is None


PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ctaprod.pilot.watchdog import Limits, run_payload

    work = Path(sys.argv[1])
    script = "setsid sleep 1000 & echo $! > pids; echo $$ >> pids; exec sleep 1000"
    run_payload(["sh", "-c", script], cwd=work, env=None, stdout_path=work / "o",
                stderr_path=work / "e", limits=Limits())
    """
)


def test_payload_and_setsid_child_die_with_a_killed_pilot(tmp_path: Path) -> None:
    parent = subprocess.Popen([PY, "-c", PARENT, str(tmp_path)])
    pids = tmp_path / "pids"
    try:
        deadline = time.monotonic() + 30.0
        while len(pids.read_text().split() if pids.exists() else []) < 2:
            assert time.monotonic() < deadline, "the payload was not started"
            time.sleep(0.05)
        payload = pids_from(pids)
        assert len(payload) == 2
        parent.send_signal(signal.SIGKILL)  # cannot be caught: the supervisor must notice
        parent.wait(timeout=5)
        assert wait_gone(payload, timeout=15.0)
    finally:
        parent.kill()
        parent.wait()
        for p in pids_from(pids) if pids.exists() else []:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


# The setsid child is started after the watchdog's first look and its parent is gone before
# the second: only a subreaper (or a cgroup) can still find it.
ESCAPE = "sleep 0.3; (setsid sleep 1000 & echo $! > pids); echo escaped"


def _kill_leftovers(path: Path) -> list[psutil.Process]:
    procs = pids_from(path)
    alive = [p for p in procs if not is_gone(p)]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return alive


def test_setsid_child_is_killed_when_the_payload_ends(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", ESCAPE], poll_interval=1.0)
    assert result.outcome is Outcome.COMPLETED
    assert result.exit_code == 0
    assert (tmp_path / "stdout.txt").read_text() == "escaped\n"
    assert wait_gone(pids_from(tmp_path / "pids"), timeout=5.0), _kill_leftovers(tmp_path / "pids")


def test_setsid_child_is_killed_with_the_payload(tmp_path: Path) -> None:
    script = f"{ESCAPE}; exec sleep 1000"
    result = run(
        tmp_path,
        ["sh", "-c", script],
        poll_interval=1.0,
        heartbeat=lambda _: (tmp_path / "pids").exists(),
        heartbeat_interval=0.8,
    )
    assert result.outcome is Outcome.KILLED
    assert result.exit_code == -signal.SIGTERM
    assert wait_gone(pids_from(tmp_path / "pids"), timeout=5.0), _kill_leftovers(tmp_path / "pids")


def test_double_fork_and_sigterm_ignoring_orphans_are_killed(tmp_path: Path) -> None:
    script = (
        "(trap '' TERM; (trap '' TERM; exec sleep 1000) & echo $! > pids) ; "
        "sleep 0.3; setsid sh -c 'trap \"\" TERM; sleep 1000' & echo $! >> pids; echo done"
    )
    result = run(tmp_path, ["sh", "-c", script], poll_interval=1.0, kill_grace=0.5)
    assert result.outcome is Outcome.COMPLETED, result.message
    assert wait_gone(pids_from(tmp_path / "pids"), timeout=5.0), _kill_leftovers(tmp_path / "pids")


def test_without_supervisor_the_payload_still_runs(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", "sleep 30 & echo $! > pids; echo hi"], supervise=False)
    assert (result.outcome, result.exit_code) == (Outcome.COMPLETED, 0)
    assert (tmp_path / "stdout.txt").read_text() == "hi\n"
    assert wait_gone(pids_from(tmp_path / "pids"), timeout=5.0)


def test_huge_stdout_is_capped_while_written(tmp_path: Path) -> None:
    script = "yes 'a line of output' | head -c 100000000; echo; echo the very end; echo oops >&2"
    result = run(tmp_path, ["sh", "-c", script], output_max_bytes=1_000_000)
    assert (result.outcome, result.exit_code) == (Outcome.COMPLETED, 0)
    out = (tmp_path / "stdout.txt").read_bytes()
    assert len(out) < 1_000_200
    assert out.startswith(b"a line of output\n")
    assert out.endswith(b"a line of output\n" * 100 + b"the very end\n")
    marker = [line for line in out.split(b"\n") if line.startswith(b"[ctaprod: ")]
    assert len(marker) == 1
    assert b"bytes of output cut here" in marker[0]
    assert 98_000_000 < int(marker[0].split()[1]) < 100_000_000
    assert (tmp_path / "stderr.txt").read_text() == "oops\n"
    assert last_line(tmp_path / "stdout.txt") == "the very end"


def test_tail_and_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(1, 31)) + "\n\n")
    assert tail(path) == "\n".join(f"line {i}" for i in range(11, 31))
    assert tail(path, max_lines=2) == "line 29\nline 30"
    assert last_line(path) == "line 30"
    # a window starting mid-line drops the partial first line
    assert tail(path, max_bytes=12) == "line 30"
    assert tail(path, max_bytes=9) == "ine 30"  # a single, partial line is kept
    assert tail(path, max_bytes=10) == "line 30"
    assert tail(path, max_bytes=16) == "line 30"


def test_tail_edge_cases(tmp_path: Path) -> None:
    assert tail(tmp_path / "missing") == ""
    assert last_line(tmp_path / "missing") == ""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert tail(empty) == ""
    assert last_line(empty) == ""
    binary = tmp_path / "bin"
    binary.write_bytes(b"ok\n\xff\xfe progress 50%\r progress 100%\n")
    assert last_line(binary) == "progress 100%"
    assert "\ufffd" in tail(binary)
    exact = tmp_path / "exact"
    exact.write_bytes(b"first\nsecond\n")
    assert tail(exact, max_bytes=7) == "second"
    assert tail(exact, max_bytes=13) == "first\nsecond"
