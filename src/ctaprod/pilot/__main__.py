"""``python -m ctaprod.pilot``: run a pilot on this worker node.

Configuration comes from ``CTAPROD_PILOT_*`` environment variables (see
:class:`ctaprod.pilot.config.PilotConfig`); command-line options override them. argparse,
not Typer: a worker node needs as little as possible.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ctaprod.pilot.config import LOG_FORMAT, PilotConfig
from ctaprod.pilot.loop import run_pilot

# option -> (type, help); each maps to the PilotConfig field of the same name
_OPTIONS: dict[str, tuple[type, str]] = {
    "url": (str, "server URL"),
    "token": (str, "pilot token (prefer CTAPROD_PILOT_TOKEN or --token-file)"),
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
    parser.add_argument("--token-file", type=Path, help="read the pilot token from this file")
    parser.add_argument("--tag", dest="tags", action="append", help="a tag (repeatable)")
    parser.add_argument("--once-job", action="store_const", const=True, help="run at most one job")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> tuple[PilotConfig, str]:
    """The configuration (arguments over environment) and the log level."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k not in ("token_file", "log_level")
    }
    if args.token_file is not None:
        values["token"] = args.token_file.read_text().strip()
    return PilotConfig(**values), str(args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, set up logging, run the pilot; returns its exit code."""
    try:
        config, level = parse_config(argv)
    except (ValidationError, OSError) as exc:
        sys.stderr.write(f"invalid pilot configuration: {exc}\n")
        return 2
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not config.token:
        logging.getLogger("ctaprod.pilot").warning("no pilot token (CTAPROD_PILOT_TOKEN)")
    return run_pilot(config)


if __name__ == "__main__":
    sys.exit(main())
