"""Starting a payload: below the supervisor (:mod:`ctaprod.pilot.reaper`) where possible.

The supervisor is started by path with ``python -I`` (it needs the standard library only),
in a session of its own, with its stdin the read end of a control pipe whose only writer is
the pilot: its EOF tells the supervisor that the pilot is gone. ``PR_SET_PDEATHSIG`` adds
SIGTERM (not SIGKILL: the supervisor must live to kill the tree) when the pilot's thread
dies. Without ``prctl`` the payload is started directly in its own session, with a warning.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ctaprod.pilot import reaper
from ctaprod.pilot.capped_output import OutputPump

logger = logging.getLogger("ctaprod.pilot.watchdog")

_PR_SET_PDEATHSIG = 1
_SUPERVISOR_START = 60.0  # seconds for the supervisor to start the payload (loaded node)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()  # resolved before any fork: the child must only make the call


def _make_preexec(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """Deliver ``sig`` to the child when this process dies (``PR_SET_PDEATHSIG``)."""
    prctl = _prctl
    if prctl is None:
        return None
    parent, signum = os.getpid(), int(sig)

    def preexec() -> None:  # runs in the forked child: keep it minimal
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


class StartFailed(Exception):
    """The payload could not be started; the message says why."""

    pass


class _NoSupervisor(Exception):
    pass


@functools.cache  # once per reason and process: a pilot runs many payloads
def _warn_unsupervised(reason: str) -> None:
    logger.warning(
        "payloads run without a supervisor (%s): processes that leave the payload's "
        "session may outlive the job",
        reason,
    )


def _wait_line(fd: int, timeout: float) -> str:
    """The first line written on ``fd`` ('' at EOF or after ``timeout`` seconds)."""
    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _start_supervised(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None, pump: OutputPump, grace: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the payload below the supervisor; the supervisor's Popen and the write end of
    its control pipe (the pilot holds it open while the payload may run)."""
    status_r, status_w = os.pipe()
    control_r, control_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", reaper.__file__, str(status_w), f"{grace:g}", "--", *argv],
            cwd=cwd,
            env=env,
            stdin=control_r,
            stdout=pump.stdout_fd,
            stderr=pump.stderr_fd,
            pass_fds=(status_w,),
            start_new_session=True,
            # SIGTERM, not SIGKILL: the supervisor must live to kill the tree
            preexec_fn=_make_preexec(signal.SIGTERM),
        )
    except BaseException:
        os.close(control_w)
        raise
    finally:
        os.close(status_w)
        os.close(control_r)
    try:
        line = _wait_line(status_r, _SUPERVISOR_START)
    finally:
        os.close(status_r)
    if line.startswith("started "):
        return proc, control_w
    os.close(control_w)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    if line.startswith("unsupported "):
        raise _NoSupervisor(line.removeprefix("unsupported "))
    raise StartFailed(line.removeprefix("error ") or "the payload supervisor did not start")


def start_payload(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    pump: OutputPump,
    grace: float,
    supervise: bool,
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the payload (supervised when possible); the Popen of the tree's root and the
    supervisor's control pipe (None when unsupervised). StartFailed if it cannot start."""
    environment = None if env is None else dict(env)
    if supervise and _prctl is not None:
        try:
            return _start_supervised(argv, cwd, environment, pump, grace)
        except _NoSupervisor as exc:
            reason = str(exc)
        except OSError as exc:  # the interpreter itself cannot be started
            reason = f"cannot start the supervisor: {exc}"
    else:
        reason = "prctl unavailable" if supervise else "disabled"
    _warn_unsupervised(reason)
    try:
        with open(os.devnull, "rb") as stdin:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=environment,
                stdin=stdin,
                stdout=pump.stdout_fd,
                stderr=pump.stderr_fd,
                start_new_session=True,
                preexec_fn=_make_preexec(),
            )
    except (OSError, subprocess.SubprocessError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartFailed(f"cannot start {argv[0]!r}: {reason}") from exc
    return proc, None
