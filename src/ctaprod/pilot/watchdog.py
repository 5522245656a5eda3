"""Run a job payload under a watchdog.

On Linux the payload runs below a small supervisor process (:mod:`ctaprod.pilot.reaper`), a
child subreaper in its own session: orphaned descendants (``setsid`` children, double forks)
are re-parented to it, so the whole tree is found, measured and killed -- when the payload
ends, when the watchdog stops it, and when the pilot dies, even by SIGKILL (the supervisor
sees its control pipe close). Where that is not possible (no ``prctl``) the payload is
started directly in its own session, with a logged warning; orphans may then escape.
stdout and stderr go through pipes into capped files (:mod:`ctaprod.pilot.capped_output`).
The watchdog polls the whole process tree with psutil, enforces wall-clock, CPU and memory
limits, and periodically calls a heartbeat callback whose answer may request a kill.

CPU accounting: each live process contributes its own CPU time plus that of the children it
has reaped; the root's final figure comes from ``os.wait4``; descendants that were orphaned
(reparented outside the tree) keep the last CPU time measured for them.  The reported value
never decreases.  Memory is the summed RSS of the tree (shared pages are counted per process),
the supervisor's own excepted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil

from ctaprod.pilot.capped_output import DEFAULT_MAX_BYTES, OutputPump
from ctaprod.pilot.payload_start import StartFailed, start_payload

logger = logging.getLogger("ctaprod.pilot.watchdog")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    wall_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


@dataclass(frozen=True)
class Limits:
    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    memory_bytes: int | None = None  # peak RSS of the tree


class Outcome(StrEnum):
    COMPLETED = "completed"
    WALL_LIMIT = "wall_limit"
    CPU_LIMIT = "cpu_limit"
    MEMORY_LIMIT = "memory_limit"
    KILLED = "killed"
    START_FAILED = "start_failed"


@dataclass(frozen=True)
class PayloadResult:
    outcome: Outcome
    exit_code: int | None  # negative signal number if killed by a signal; None if never started
    usage: Usage
    message: str


HeartbeatCallback = Callable[[Usage], bool]
"""Called with the current usage; return True to request that the payload be killed."""

_REAP_TIMEOUT = 30.0  # seconds to wait for the tree after SIGKILL before giving up
_SUPERVISOR_MARGIN = 10.0  # beyond the kill grace, before the supervisor itself is killed


class _Tree:
    """The payload's process tree: discovery, measurement, signalling and reaping."""

    def __init__(self, proc: subprocess.Popen[bytes], supervised: bool) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.supervised = supervised  # the root is the supervisor: not part of the payload
        self.procs: dict[int, psutil.Process] = {}
        self.last_cpu: dict[int, float] = {}
        self.last_ppid: dict[int, int] = {}
        self.orphan_cpu = 0.0
        self.root_cpu: float | None = None  # from wait4, once the root is reaped
        self.exit_code: int | None = None
        self.cpu = 0.0
        self.peak_rss = 0
        with contextlib.suppress(psutil.NoSuchProcess):
            self.procs[self.pid] = psutil.Process(self.pid)

    @property
    def reaped(self) -> bool:
        return self.root_cpu is not None

    def reap(self, block: bool = False) -> bool:
        """Collect the root's exit status and rusage; True once it has been reaped."""
        if self.reaped:
            return True
        try:
            pid, status, rusage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: status and rusage are lost
            pid, status, rusage = self.pid, None, None
        if pid == 0:
            return False
        self.exit_code = None if status is None else os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code if self.exit_code is not None else -1
        self.root_cpu = 0.0 if rusage is None else rusage.ru_utime + rusage.ru_stime
        self.procs.pop(self.pid, None)
        return True

    def _add(self, p: psutil.Process) -> bool:
        known = self.procs.get(p.pid)
        if known is not None and known == p:
            return False
        self.procs[p.pid] = p  # a new pid, or a reused one
        return True

    def _discover(self) -> None:
        """Track members of the payload's session and descendants of tracked processes.

        Tracked processes stay tracked when orphaned; the session catches processes that
        were orphaned before the first look (e.g. ``sh -c 'sleep 60 &'``).
        """
        todo = set(self.procs) if self.reaped else {*self.procs, self.pid}
        by_ppid: dict[int, list[psutil.Process]] = {}
        for p in psutil.process_iter(["ppid"]):
            by_ppid.setdefault(p.info["ppid"], []).append(p)
            if p.pid != self.pid and p.pid not in self.procs and _session(p.pid) == self.pid:
                self._add(p)
                todo.add(p.pid)
        while todo:
            for child in by_ppid.get(todo.pop(), []):
                if self._add(child):
                    todo.add(child.pid)

    def sample(self, wall: float) -> Usage:
        self._discover()
        live_cpu, rss, gone = 0.0, 0, []
        for pid, p in self.procs.items():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    mem = p.memory_info().rss
                    ppid = p.ppid()
            except psutil.NoSuchProcess:  # includes ZombieProcess
                gone.append(pid)
                continue
            except psutil.AccessDenied:
                continue
            cpu = t.user + t.system + t.children_user + t.children_system
            self.last_cpu[pid], self.last_ppid[pid] = cpu, ppid
            live_cpu += cpu
            if not (self.supervised and pid == self.pid):
                rss += mem
        for pid in gone:
            self.procs.pop(pid)
        for pid in gone:  # not reaped inside the tree: its CPU time would be lost
            if pid != self.pid and self.last_ppid.get(pid) not in self.procs:
                self.orphan_cpu += self.last_cpu.get(pid, 0.0)
            self.last_cpu.pop(pid, None)
            self.last_ppid.pop(pid, None)
        self.cpu = max(self.cpu, live_cpu + self.orphan_cpu + (self.root_cpu or 0.0))
        self.peak_rss = max(self.peak_rss, rss)
        return Usage(self.cpu, wall, rss, self.peak_rss)

    def alive(self) -> list[psutil.Process]:
        result = []
        for p in self.procs.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    result.append(p)
            except psutil.NoSuchProcess:
                pass
        return result

    def send(self, sig: signal.Signals) -> None:
        self._discover()
        # the group id stays valid while the unreaped root or any group member exists
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        for p in self.alive():  # also reaches members that left the group (setsid)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                p.send_signal(sig)

    def _wait_all(self, timeout: float) -> bool:
        """Reap the root and wait until no tracked process runs; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.reap()
            if not self.alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def terminate(self, grace: float) -> None:
        """SIGTERM the tree, wait up to ``grace`` seconds, then SIGKILL what is left.

        A supervised tree is stopped by its supervisor, which sees every orphan; the
        watchdog kills what it can find only if the supervisor does not end in time."""
        if self.supervised and not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if self._wait_all(grace + _SUPERVISOR_MARGIN):
                self.reap(block=True)
                return
            logger.error("the payload supervisor did not stop the payload; killing the tree")
        self.send(signal.SIGTERM)
        if not self._wait_all(grace):
            self.send(signal.SIGKILL)
            if not self._wait_all(_REAP_TIMEOUT):
                logger.error("payload processes survived SIGKILL: %s", self.alive())
                return
        self.reap(block=True)  # the root is a zombie by now, if not reaped already


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"terminated by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"terminated by signal {-code}"
    return f"exited with code {code}"


def run_payload(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    stdout_path: Path,
    stderr_path: Path,
    limits: Limits,
    heartbeat: HeartbeatCallback | None = None,
    heartbeat_interval: float = 60.0,
    poll_interval: float = 0.5,
    stop_event: threading.Event | None = None,
    kill_grace: float = 5.0,
    output_max_bytes: int = DEFAULT_MAX_BYTES,
    supervise: bool = True,
) -> PayloadResult:
    """Run ``argv`` to completion or until a limit, a kill request or ``stop_event``.

    The heartbeat is called synchronously from the polling loop, first after one interval.
    An exception raised by it is logged and otherwise ignored. Each of stdout and stderr
    keeps at most ``output_max_bytes`` (head and tail). ``supervise=False`` runs the payload
    without the supervisor (as where ``prctl`` is missing). When this returns, no process of
    the payload is left (unless it escaped an unsupervised run).
    """
    start = time.monotonic()
    if not argv:
        return PayloadResult(Outcome.START_FAILED, None, Usage(0.0, 0.0, 0, 0), "empty command")
    pump = OutputPump(stdout_path, stderr_path, output_max_bytes)
    try:
        proc, control = start_payload(argv, cwd, env, pump, kill_grace, supervise)
    except StartFailed as exc:
        pump.finish(timeout=1.0)
        logger.error("%s", exc)
        usage = Usage(0.0, time.monotonic() - start, 0, 0)
        return PayloadResult(Outcome.START_FAILED, None, usage, str(exc))
    pump.child_started()
    try:
        return _watch(
            proc,
            control is not None,
            start,
            limits,
            heartbeat,
            heartbeat_interval,
            poll_interval,
            stop_event,
            kill_grace,
        )
    finally:
        if control is not None:
            os.close(control)  # the supervisor is gone by now; this is for a leak's sake
        cut = pump.finish()
        if cut:
            logger.warning("payload output: %d bytes cut (head and tail kept)", cut)
        for error in pump.errors[:3]:
            logger.error("payload output not fully written: %s", error)


def _watch(
    proc: subprocess.Popen[bytes],
    supervised: bool,
    start: float,
    limits: Limits,
    heartbeat: HeartbeatCallback | None,
    heartbeat_interval: float,
    poll_interval: float,
    stop_event: threading.Event | None,
    kill_grace: float,
) -> PayloadResult:
    tree = _Tree(proc, supervised)
    next_heartbeat = start + heartbeat_interval
    outcome, message = Outcome.COMPLETED, ""
    try:
        while True:
            exited = tree.reap()
            now = time.monotonic()
            usage = tree.sample(now - start)
            if exited:
                break
            if limits.wall_seconds is not None and usage.wall_seconds > limits.wall_seconds:
                outcome = Outcome.WALL_LIMIT
                message = f"wall-clock limit of {limits.wall_seconds:g}s exceeded"
            elif limits.cpu_seconds is not None and usage.cpu_seconds > limits.cpu_seconds:
                outcome = Outcome.CPU_LIMIT
                message = f"CPU time limit of {limits.cpu_seconds:g}s exceeded"
            elif limits.memory_bytes is not None and usage.peak_rss_bytes > limits.memory_bytes:
                outcome = Outcome.MEMORY_LIMIT
                message = (
                    f"memory limit of {limits.memory_bytes} bytes exceeded "
                    f"(RSS {usage.peak_rss_bytes} bytes)"
                )
            elif stop_event is not None and stop_event.is_set():
                outcome, message = Outcome.KILLED, "killed: stop requested"
            elif heartbeat is not None and now >= next_heartbeat:
                next_heartbeat = now + heartbeat_interval
                try:
                    kill = heartbeat(usage)
                except Exception:
                    logger.exception("heartbeat callback failed; the payload keeps running")
                    kill = False
                if kill:
                    outcome, message = Outcome.KILLED, "killed on request"
            if outcome is not Outcome.COMPLETED:
                logger.warning("payload %d: %s", tree.pid, message)
                break
            if stop_event is not None:
                stop_event.wait(poll_interval)
            else:
                time.sleep(poll_interval)
    finally:  # also on KeyboardInterrupt or an unexpected error: never leave the payload behind
        leftovers = tree.alive()
        if leftovers or not tree.reaped:
            if outcome is Outcome.COMPLETED and tree.reaped:
                logger.warning("killing %d leftover payload process(es)", len(leftovers))
            tree.terminate(kill_grace)

    usage = tree.sample(time.monotonic() - start)
    if outcome is Outcome.COMPLETED:
        message = _describe_exit(tree.exit_code)
    else:
        message = f"{message}; {_describe_exit(tree.exit_code)}"
    return PayloadResult(outcome, tree.exit_code, usage, message)


def tail(path: Path, max_bytes: int = 4096, max_lines: int = 20) -> str:
    """The last lines of a file (at most ``max_bytes`` read), or "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(max(0, start - 1))
            data = f.read(size - max(0, start - 1))
    except OSError:
        return ""
    complete = start == 0 or data[:1] in (b"\n", b"\r")  # does the window start a line?
    lines = (data if start == 0 else data[1:]).decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not complete and len(lines) > 1:  # drop a partial first line, unless it is all we have
        lines.pop(0)
    return "\n".join(lines[-max_lines:]) if max_lines > 0 else ""


def last_line(path: Path) -> str:
    """The last non-empty line of a file, or "" if there is none."""
    return tail(path, max_lines=1).strip()
