"""A computing element running pilots as local processes.

Everything about a pilot lives in ``<work_dir>/<stamp>/``: ``spec.json`` (written at
submission: the pilot is QUEUED), ``pid`` and ``starttime`` (written once it is started),
``pilot.log`` (its stdout and stderr), ``exitcode`` (written by a small ``sh`` wrapper when
the pilot command ends) and ``cancelled``.  Status is derived from these files and from
``/proc``, so a new instance on the same directory (after a restart of the owning service)
reports the same states as the one that started the pilots.  A file lock serialises the
instances that share a directory.

A pilot's credential is kept in this object's memory only, never in ``spec.json`` or any
other file: the pilot reads it from an inherited pipe whose descriptor number is in
``CTAPROD_PILOT_TOKEN_FD``. A pilot still queued when its CE object is gone (the service
restarted) has lost its credential: it is aborted, and the pilot factory submits another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ctaprod.core.errors import Conflict, InvalidInput, NotFound
from ctaprod.resources.computing.base import (
    PILOT_JOB_FINAL,
    ComputingElement,
    PilotJobStatus,
    PilotSpec,
    check_specs,
    check_stamp,
)

__all__ = ["LocalComputingElement"]

logger = logging.getLogger("ctaprod.resources.computing.local")

# Runs the pilot command, then records its exit code atomically next to it.
_WRAPPER = '"$@"; rc=$?; echo "$rc" > exitcode.tmp && mv -f exitcode.tmp exitcode; exit "$rc"'
# Variables passed on from the service's environment; everything else comes from the spec,
# so that the service's own secrets never reach a pilot.
_ENV_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SHELL")
Q, R = PilotJobStatus.QUEUED, PilotJobStatus.RUNNING


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _group_alive(pgid: int) -> bool:
    """Whether a non-zombie process of process group ``pgid`` exists."""
    if not Path("/proc/self/stat").exists():  # pragma: no cover - not Linux
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields and fields[0] not in "ZX" and int(fields[2]) == pgid:
                return True
    return False


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


class LocalComputingElement(ComputingElement):
    """Pilots as processes of this host, at most ``max_slots`` running at a time."""

    def __init__(
        self, name: str, work_dir: Path, max_slots: int, *, kill_grace: float = 2.0
    ) -> None:
        super().__init__(name)
        if max_slots < 0:
            raise InvalidInput(f"CE {name}: max_slots must be >= 0, not {max_slots}", ce=name)
        self.work_dir = Path(work_dir).absolute()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.max_slots = max_slots
        self.kill_grace = kill_grace
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._final: dict[str, PilotJobStatus] = {}
        self._credentials: dict[str, str] = {}  # stamp -> credential, until it is started
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self.work_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _dir(self, ref: str) -> Path | None:
        """The directory of a known pilot, None for malformed or unknown references."""
        try:
            check_stamp(ref)
        except InvalidInput:
            return None
        directory = self.work_dir / ref
        return directory if (directory / "spec.json").is_file() else None

    def _alive(self, stamp: str, directory: Path, pid: int) -> bool:
        child = self._children.get(stamp)
        if child is not None and child.poll() is not None:  # reaps our own children
            del self._children[stamp]
            return False
        fields = _proc_stat(pid)
        if fields is None or fields[0] in "ZX":
            return False
        started = _read_int(directory / "starttime")
        return started is None or int(fields[19]) == started

    def _state(self, stamp: str) -> PilotJobStatus:
        if stamp in self._final:
            return self._final[stamp]
        directory = self._dir(stamp)
        if directory is None:
            return PilotJobStatus.UNKNOWN
        cancelled = (directory / "cancelled").exists()
        code = _read_int(directory / "exitcode")
        if code is None:
            pid = _read_int(directory / "pid")
            if pid is None and not cancelled:
                return Q
            if pid is not None and self._alive(stamp, directory, pid):
                return R
            code = _read_int(directory / "exitcode")  # it may have ended meanwhile
        if cancelled:
            result = PilotJobStatus.ABORTED
        else:
            result = PilotJobStatus.DONE if code == 0 else PilotJobStatus.FAILED
        self._final[stamp] = result
        self._children.pop(stamp, None)
        return result

    def _census(self) -> tuple[int, list[str]]:
        """Running count and queued stamps in submission order."""
        running, queued = 0, []
        for entry in self.work_dir.iterdir():
            state = self._state(entry.name)
            if state == R:
                running += 1
            elif state == Q:
                spec = json.loads((entry / "spec.json").read_text())
                queued.append((spec.get("submitted", 0), entry.name))
        return running, [stamp for _, stamp in sorted(queued)]

    def _schedule(self) -> None:
        running, queued = self._census()
        for stamp in queued[: max(0, self.max_slots - running)]:
            if not self._start(stamp):
                break

    def _environment(self, spec: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
        env["CTAPROD_PILOT_STAMP"] = spec["stamp"]
        env.update(spec.get("env", {}))
        return env

    def _credential_pipe(self, stamp: str, spec: dict[str, Any]) -> int | None:
        """The read end of a pipe holding the pilot's credential (None: it has none);
        Conflict when the credential was lost (submitted by another CE object)."""
        credential = self._credentials.get(stamp)
        if credential is None:
            if spec.get("credential"):
                raise Conflict(f"CE {self.name}: pilot {stamp} lost its credential", stamp=stamp)
            return None
        data = credential.encode()
        read_end, write_end = os.pipe()
        try:
            # A credential is far below the pipe's buffer (64 KiB): this never blocks.
            if os.write(write_end, data) != len(data):
                raise OSError("short write of the pilot credential")
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return read_end

    def _abort_lost(self, stamp: str, directory: Path, why: str) -> None:
        logger.warning("CE %s: pilot %s aborted: %s", self.name, stamp, why)
        with open(directory / "pilot.log", "a") as log:
            log.write(f"ctaprod local CE: not started: {why}\n")
        _write(directory / "cancelled", "")

    def _start(self, stamp: str) -> bool:
        directory = self.work_dir / stamp
        spec = json.loads((directory / "spec.json").read_text())
        try:
            fd = self._credential_pipe(stamp, spec)
        except Conflict as exc:
            self._abort_lost(stamp, directory, f"{exc.message} (its CE was restarted)")
            return True
        env = self._environment(spec)
        if fd is not None:
            env["CTAPROD_PILOT_TOKEN_FD"] = str(fd)
        try:
            with open(directory / "pilot.log", "ab") as log:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", _WRAPPER, "sh", *spec["argv"]],
                    cwd=directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=() if fd is None else (fd,),
                )
        except OSError as exc:  # fork/exec failure: keep it queued, retry later
            logger.warning("CE %s: cannot start pilot %s: %s", self.name, stamp, exc)
            return False
        finally:
            if fd is not None:
                os.close(fd)
        self._credentials.pop(stamp, None)  # the pilot holds it now, in memory only
        self._children[stamp] = proc
        fields = _proc_stat(proc.pid)
        if fields is not None:
            _write(directory / "starttime", f"{fields[19]}\n")
        _write(directory / "pid", f"{proc.pid}\n")
        return True

    def submit(self, specs: Sequence[PilotSpec]) -> list[str]:
        """Queue one pilot per spec and start as many as free slots allow; refs are stamps."""
        check_specs(specs)
        with self._locked():
            for spec in specs:
                if (self.work_dir / spec.stamp).exists():
                    raise Conflict(
                        f"CE {self.name}: pilot {spec.stamp} exists already", stamp=spec.stamp
                    )
            now = time.time_ns()
            for seq, spec in enumerate(specs):
                directory = self.work_dir / spec.stamp
                directory.mkdir(mode=0o700)
                record = {
                    "stamp": spec.stamp,
                    "argv": list(spec.argv),
                    "env": dict(spec.env),
                    "workdir_hint": spec.workdir_hint,
                    "submitted": now + seq,
                    "credential": bool(spec.credential),  # whether it has one, not which
                }
                if spec.credential:
                    self._credentials[spec.stamp] = spec.credential
                _write(directory / "spec.json", json.dumps(record), mode=0o600)
            self._schedule()
        return [spec.stamp for spec in specs]

    def status(self, refs: Sequence[str]) -> dict[str, PilotJobStatus]:
        """Start queued pilots if slots are free, then report each reference's state."""
        with self._locked():
            self._schedule()
            return {ref: self._state(ref) for ref in refs}

    def cancel(self, refs: Sequence[str]) -> None:
        """Abort queued pilots and kill running ones (SIGTERM to the group, then SIGKILL)."""
        with self._locked():
            groups: list[int] = []
            for ref in refs:
                directory = self._dir(ref)
                state = self._state(ref)
                if directory is None or state in PILOT_JOB_FINAL:
                    continue
                self._credentials.pop(ref, None)
                _write(directory / "cancelled", "")
                pid = _read_int(directory / "pid")
                if state == R and pid is not None:
                    groups.append(pid)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGTERM)
            self._wait_groups(groups, self.kill_grace)
            for pgid in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            self._wait_groups(groups, 2.0)
            for ref in refs:
                self._state(ref)
            self._schedule()

    def _wait_groups(self, groups: Sequence[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for child in list(self._children.values()):
                child.poll()
            if not any(_group_alive(g) for g in groups) or time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def output(self, ref: str) -> str:
        """The text the pilot wrote to stdout and stderr so far ('' while queued)."""
        directory = self._dir(ref)
        if directory is None:
            raise NotFound(f"CE {self.name}: no pilot {ref!r}", ce=self.name, ref=ref)
        try:
            return (directory / "pilot.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def available_slots(self) -> int:
        """Free slots: ``max_slots`` minus running and queued pilots."""
        with self._locked():
            running, queued = self._census()
        return max(0, self.max_slots - running - len(queued))
