"""``python -m ctaprod.pilot``: run a pilot on this worker node.

Configuration comes from ``CTAPROD_PILOT_*`` environment variables (see
:class:`ctaprod.pilot.config.PilotConfig`); command-line options override them. argparse,
not Typer: a worker node needs as little as possible.

The pilot credential is read once and kept in memory only, never passed on: from the
descriptor named by ``CTAPROD_PILOT_TOKEN_FD`` (how the Local CE hands it over), from
``--token-file`` (removed once read with ``--delete-token-file``), or, for pilots started by
hand, from ``CTAPROD_PILOT_TOKEN`` or ``--token``. The environment variable is removed from
this process's environment at once, but ``/proc/<pid>/environ`` keeps showing the value the
process started with (and ``/proc/<pid>/cmdline`` shows ``--token``): a payload running as
the same user sees it unless it runs in a sandbox, hence the warning.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ctaprod.pilot.config import LOG_FORMAT, PilotConfig
from ctaprod.pilot.loop import run_pilot

# option -> (type, help); each maps to the PilotConfig field of the same name
TOKEN_VARIABLE, TOKEN_FD_VARIABLE = "CTAPROD_PILOT_TOKEN", "CTAPROD_PILOT_TOKEN_FD"
_READABLE = "readable by payloads unless they run in a sandbox; prefer --token-file"
_PR_SET_DUMPABLE = 4

_OPTIONS: dict[str, tuple[type, str]] = {
    "url": (str, "server URL"),
    "stamp": (str, "unique pilot reference (default: random)"),
    "site": (str, "site name"),
    "ce": (str, "computing element"),
    "queue": (str, "batch queue"),
    "platform": (str, "platform offered to jobs"),
    "cpu-time": (int, "seconds this pilot may live"),
    "memory-mb": (int, "memory offered to jobs (MB)"),
    "processors": (int, "processors offered to jobs"),
    "max-empty-matches": (int, "stop after this many empty matches in a row"),
    "empty-match-sleep": (float, "seconds between empty matches"),
    "min-time-left": (int, "stop when less time than this is left (s)"),
    "work-dir": (Path, "where job directories and the pilot log go (default: cwd)"),
    "heartbeat-interval": (float, "seconds between heartbeats (default: the server's)"),
    "request-timeout": (float, "seconds per HTTP request"),
    "max-retry-seconds": (float, "retry window when the server is unreachable"),
    "startup-retry-seconds": (float, "retry window to register at start"),
    "wall-margin": (float, "wall-clock limit = CPUTime * wall factor + this margin (s)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; unset options leave the environment's value."""
    parser = argparse.ArgumentParser(
        prog="python -m ctaprod.pilot",
        description="Ask the ctaprod server for jobs and run them (settings also from "
        "CTAPROD_PILOT_* environment variables).",
    )
    for name, (kind, text) in _OPTIONS.items():
        parser.add_argument(f"--{name}", type=kind, help=text)
    parser.add_argument("--token-file", type=Path, help="read the pilot credential from this file")
    parser.add_argument(
        "--delete-token-file",
        action="store_true",
        help="remove the --token-file once read (it is then only in the pilot's memory)",
    )
    parser.add_argument("--token", help=f"the pilot credential (visible in ps: {_READABLE})")
    parser.add_argument("--sandbox", choices=["auto", "none", "bwrap", "apptainer"])
    parser.add_argument("--apptainer-image", help="image of the apptainer sandbox")
    parser.add_argument("--tag", dest="tags", action="append", help="a tag (repeatable)")
    parser.add_argument("--once-job", action="store_const", const=True, help="run at most one job")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def read_credential(
    args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] = os.environ
) -> tuple[str, list[str]]:
    """The pilot credential and warnings to log. Removes it from ``environ`` (so that no
    child inherits it) and reads the descriptor to its end and closes it."""
    warnings: list[str] = []
    from_env = environ.pop(TOKEN_VARIABLE, None)
    fd_text = environ.pop(TOKEN_FD_VARIABLE, None)
    from_fd = None
    if fd_text is not None:
        fd = int(fd_text)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        from_fd = b"".join(chunks).decode().strip()
    if args.token is not None:
        warnings.append(f"pilot credential given with --token: {_READABLE}")
        return str(args.token).strip(), warnings
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
        if args.delete_token_file:
            args.token_file.unlink()
        return token, warnings
    if from_fd is not None:
        return from_fd, warnings
    if from_env is not None:
        warnings.append(
            f"pilot credential taken from {TOKEN_VARIABLE} (removed from the environment, "
            f"but /proc/<pid>/environ still shows it: {_READABLE})"
        )
        return from_env.strip(), warnings
    return "", warnings


def parse_config(argv: Sequence[str] | None = None) -> tuple[PilotConfig, str, list[str]]:
    """The configuration (arguments over environment), the log level and warnings."""
    args = build_parser().parse_args(argv)
    token, warnings = read_credential(args)
    skip = ("token", "token_file", "delete_token_file", "log_level")
    values: dict[str, Any] = {
        k: v for k, v in vars(args).items() if v is not None and k not in skip
    }
    values["token"] = token
    return PilotConfig(**values), str(args.log_level), warnings


def _not_dumpable() -> None:
    """Keep same-user processes (a payload without sandbox) from reading this process's
    memory and ``/proc`` files: only root (CAP_SYS_PTRACE) still can."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, set up logging, run the pilot; returns its exit code."""
    try:
        config, level, warnings = parse_config(argv)
    except (ValidationError, OSError, ValueError) as exc:
        sys.stderr.write(f"invalid pilot configuration: {exc}\n")
        return 2
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("ctaprod.pilot")
    for warning in warnings:
        log.warning("%s", warning)
    if not config.token:
        log.warning("no pilot credential (%s, --token-file, %s)", TOKEN_FD_VARIABLE, TOKEN_VARIABLE)
    return run_pilot(config)


if __name__ == "__main__":
    _not_dumpable()
    sys.exit(main())
