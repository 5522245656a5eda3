"""The payload supervisor: a small subreaper process between the pilot and the payload.

Run as ``python -I reaper.py STATUS_FD GRACE -- ARGV...`` (by path, standard library only, so
that neither the job's ``PYTHONPATH`` nor a broken installation can stop it). It marks itself
as a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): every process of the payload that
is orphaned -- ``setsid`` children, double forks, daemons -- is re-parented to it instead of
to init, so the whole tree stays below it and can be found and killed. It then starts the
payload and writes ``started <pid>`` (or ``error <reason>``) on ``STATUS_FD``.

The tree is killed (SIGTERM, ``GRACE`` seconds, then SIGKILL, until no child is left) when
- the payload's root process ends: leftovers do not outlive the job;
- the supervisor receives SIGTERM/SIGINT/SIGHUP: the watchdog stops the job;
- its stdin reaches end of file: stdin is a pipe whose only writer is the pilot, so EOF
  means the pilot is gone, even by SIGKILL, which cannot be caught.
Once it has no child left the supervisor exits with the payload's own status (same exit
code, or killed by the same signal), so the pilot sees the payload's status as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def set_subreaper() -> str | None:
    """Make this process a child subreaper; None on success, else why it is not possible."""
    if not sys.platform.startswith("linux"):
        return f"no child subreaper on {sys.platform}"
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError) as exc:
        return f"prctl unavailable: {exc}"
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}"
    return None


def descendants(root: int) -> list[int]:
    """Pids of the living descendants of ``root`` (from ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] not in (b"Z", b"X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _signal_all(sig: int) -> None:
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, sig)
            if sig == signal.SIGTERM:
                os.kill(pid, signal.SIGCONT)  # a stopped process would never see the SIGTERM
        except (ProcessLookupError, PermissionError):
            pass


def _exit_like(status: int | None) -> None:
    """Exit with the payload's wait status: the same code, or death by the same signal."""
    if status is None:
        os._exit(1)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core of the supervisor
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        time.sleep(1.0)  # the signal is delivered well before this ends
        os._exit(128 + sig)  # a signal whose default is not to terminate
    os._exit(os.waitstatus_to_exitcode(status))


def _start(argv: Sequence[str], parent: int) -> subprocess.Popen[bytes]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:  # the payload dies with the supervisor, should that be killed
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    # stdout and stderr are inherited (the pilot's capture pipes), stdin is not the control pipe
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, preexec_fn=preexec)


def supervise(status_fd: int, grace: float, argv: Sequence[str]) -> None:
    """Run ``argv`` as described in the module docstring; never returns."""
    problem = set_subreaper()
    if problem is not None:
        os.write(status_fd, f"unsupported {problem}\n".encode())
        os._exit(1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    stop_requested: list[int] = []
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select below
    signal.set_wakeup_fd(wake_w)
    try:
        payload = _start(argv, os.getpid())
    except (OSError, subprocess.SubprocessError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        os.write(status_fd, f"error cannot start {argv[0]!r}: {reason}\n".encode())
        os._exit(1)
    os.write(status_fd, f"started {payload.pid}\n".encode())
    os.close(status_fd)

    watched = [0, wake_r]  # stdin: the pilot's end of the control pipe
    root_status: int | None = None
    ending, kill_at = False, 0.0
    while True:
        ready, _, _ = select.select(watched, [], [], 0.05 if ending else 1.0)
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
        if 0 in ready and not os.read(0, 512):
            watched.remove(0)  # the pilot is gone
            stop_requested.append(0)
        while True:  # reap every child that ended, ours or adopted
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                _exit_like(root_status)
            if pid == 0:
                break
            if pid == payload.pid:
                root_status = status
                payload.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait
        if not ending and (stop_requested or root_status is not None):
            ending, kill_at = True, time.monotonic() + grace
            _signal_all(signal.SIGTERM)
        elif ending and time.monotonic() >= kill_at:
            _signal_all(signal.SIGKILL)


def main(args: Sequence[str]) -> None:
    """``STATUS_FD GRACE -- ARGV...``."""
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: reaper.py STATUS_FD GRACE -- ARGV...\n")
        os._exit(2)
    try:
        supervise(int(args[0]), float(args[1]), args[3:])
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
        sys.stderr.write(f"reaper: {exc}\n")
        os._exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
