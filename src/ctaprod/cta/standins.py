"""Stand-ins for the CTA programs: ``python -m ctaprod.cta.standins PROGRAM ARGS...``.

Each takes the real program's command line (the options a production uses), reads its input
files (a missing one is a clear failure), and writes its outputs where the real program
would, with the real program's names. The content is a few kilobytes of bytes derived from
the inputs' content, the options that matter and the run number: a rerun writes the same
bytes, as the catalog wants when a task's job runs again. Standard library only (worker
nodes).

Behaviour, from the environment (the demo and the tests set it):

- ``CTAPROD_STANDIN_BYTES``: size of each data output (default 4096; logs are smaller);
- ``CTAPROD_STANDIN_SECONDS``: time each run takes (default 0);
- ``CTAPROD_STANDIN_FAILURE_RATE``: probability that a run fails, exit status 1 with a
  message and no outputs (default 0).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["PROGRAMS", "StandinError", "main"]


def _say(message: str) -> None:
    """One line on stderr: the job's StdError keeps it."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


DEFAULT_BYTES = 4096
DIVERGENT = ("0.0022", "0.0043", "0.008", "0.01135", "0.01453")
PHI = {"North": 180, "South": 0, "East": 90, "West": 270}


class StandinError(Exception):
    """The stand-in cannot run as asked (bad option, missing input): exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise StandinError(f"{self.prog}: {message}")


def _digest(paths: Sequence[str]) -> str:
    """The inputs' content, as one hash; a missing input is a StandinError."""
    total = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as stream:
                while block := stream.read(1 << 20):
                    total.update(block)
        except FileNotFoundError:
            raise StandinError(f"input file {path} not found") from None
        except OSError as exc:
            raise StandinError(f"input file {path}: {exc}") from None
    return total.hexdigest()


def _write(path: str | Path, seed: str, size: int) -> None:
    """``size`` bytes derived from ``seed`` only."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(seed.encode()).digest()
    with target.open("wb") as stream:
        written = 0
        while written < size:
            block = hashlib.sha256(block).digest()
            stream.write(block[: size - written])
            written += len(block)


def _size() -> int:
    text = os.environ.get("CTAPROD_STANDIN_BYTES", "")
    try:
        return max(1, int(text)) if text else DEFAULT_BYTES
    except ValueError:
        raise StandinError(f"CTAPROD_STANDIN_BYTES={text!r} is not a number") from None


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise StandinError(f"{what}={text!r} is not a number") from None


# --- the programs ----------------------------------------------------------------------------


def _prod_run(args: Sequence[str]) -> None:
    """CTADIRAC's ``dirac_prod_run``: CORSIKA piped into sim_telarray, one output (and its
    log) per moon condition, ``NSHOW`` showers (environment)."""
    parser = _Parser(prog="dirac_prod_run")
    parser.add_argument("--start_run", type=int, default=0)
    parser.add_argument("--run-number", type=int, required=True)
    for flag in ("--with-half-moon", "--with-full-moon", "--with-sct", "--with-all-scts"):
        parser.add_argument(flag, action="store_true")
    for flag in ("--with-magic", "--sequential", "--without-multipipe", "--divergent"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--instrument-random-seeds", action="store_true")
    parser.add_argument("--random-mono-probability", type=float)
    parser.add_argument("site", choices=["LaPalma", "Paranal"])
    parser.add_argument("particle")
    parser.add_argument("pointing", choices=list(PHI))
    parser.add_argument("zenith", type=float)
    opts, layouts = parser.parse_known_args(args)
    if any(not extra.startswith("--") for extra in layouts):
        raise StandinError(f"dirac_prod_run: unexpected arguments {layouts}")
    showers = os.environ.get("NSHOW")
    if not showers or not showers.isdigit():
        raise StandinError("dirac_prod_run: NSHOW (showers per run) is not set")
    run = opts.start_run + opts.run_number
    seed = " ".join(map(str, [run, showers, *args]))
    size = _size()
    if opts.without_multipipe:
        _write(f"Data/run{run:06d}.corsika.zst", seed, size)
        _write(f"Data/run{run:06d}.corsika.log.gz", seed + " log", size // 8 + 1)
        return
    moons = ["dark"] + (["moon"] if opts.with_half_moon or opts.with_full_moon else [])
    moons += ["fullmoon"] if opts.with_full_moon else []
    name = f"{opts.particle}_{opts.zenith:g}deg_{PHI[opts.pointing]}deg_run{run:06d}___"
    name += f"cta-prod6-{opts.site.lower()}"
    for div in DIVERGENT if opts.divergent else [""]:
        for moon in moons:
            stem = f"Data/{name}{'-div' + div if div else ''}-{moon}"
            _write(f"{stem}.simtel.zst", f"{seed} {div} {moon}", size)
            _write(f"{stem}.log_hist.tar", f"{seed} {div} {moon} log", size // 8 + 1)


def _simpipe(args: Sequence[str]) -> None:
    """simtools' ``simtools-simulate-prod``."""
    parser = _Parser(prog="simtools-simulate-prod")
    parser.add_argument("--config", required=True)
    parser.add_argument("--run_number", type=int, required=True)
    parser.add_argument("--output_path", default=".")
    parser.add_argument("--nshow", type=int)
    opts = parser.parse_args(args)
    seed = f"{_digest([opts.config])} {opts.run_number} {opts.nshow}"
    stem = f"{opts.output_path}/run{opts.run_number:06d}_simpipe"
    _write(f"{stem}.simtel.zst", seed, _size())
    _write(f"{stem}.log_hist.tar", seed + " log", _size() // 8 + 1)


def _sim_telarray(args: Sequence[str]) -> None:
    """sim_telarray on a CORSIKA file: ``sim_telarray [-c CFG] [-C K=V]... -o OUT INPUT``."""
    parser = _Parser(prog="sim_telarray")
    parser.add_argument("-c", dest="config")
    parser.add_argument("-C", dest="settings", action="append", default=[])
    parser.add_argument("-o", dest="output", required=True)
    parser.add_argument("input")
    opts, defines = parser.parse_known_args(args)
    if any(not d.startswith("-D") for d in defines):
        raise StandinError(f"sim_telarray: unexpected arguments {defines}")
    seed = " ".join([_digest([opts.input]), *opts.settings, *sorted(defines)])
    _write(opts.output, seed, _size())


def _one_to_one(prog: str, input_flag: str, output_flag: str) -> Callable[[Sequence[str]], None]:
    """A program reading one file and writing one (ctapipe-process, evndisp)."""

    def run(args: Sequence[str]) -> None:
        parser = _Parser(prog=prog)
        parser.add_argument(input_flag, dest="input", required=True)
        parser.add_argument(output_flag, dest="output", required=True)
        parser.add_argument("-c", "--config", action="append", default=[])
        parser.add_argument("--max-events", type=int)
        opts, rest = parser.parse_known_args(args)
        seed = " ".join([prog, _digest([opts.input]), *opts.config, str(opts.max_events), *rest])
        _write(opts.output, seed, _size())

    return run


def _merge(args: Sequence[str]) -> None:
    """``ctapipe-merge --output OUT [flags] INPUT...``: the size of the inputs together."""
    parser = _Parser(prog="ctapipe-merge")
    parser.add_argument("--output", "-o", required=True)
    parser.add_argument("inputs", nargs="+")
    opts, flags = parser.parse_known_args(args)
    seed = " ".join(["merge", _digest(opts.inputs), *sorted(flags)])
    _write(opts.output, seed, sum(Path(p).stat().st_size for p in opts.inputs))


def _train(prog: str) -> Callable[[Sequence[str]], None]:
    def run(args: Sequence[str]) -> None:
        parser = _Parser(prog=prog)
        parser.add_argument("--input", nargs="+", default=[])
        parser.add_argument("--signal", nargs="+", default=[])
        parser.add_argument("--background", nargs="+", default=[])
        parser.add_argument("--output", "-o", required=True)
        parser.add_argument("-c", "--config", action="append", default=[])
        opts, rest = parser.parse_known_args(args)
        files = [*opts.input, *opts.signal, *opts.background]
        if not files:
            raise StandinError(f"{prog}: no training file (--input, --signal, --background)")
        _write(opts.output, " ".join([prog, _digest(files), *opts.config, *rest]), _size())

    return run


def _apply(args: Sequence[str]) -> None:
    """``ctapipe-apply-models --input IN --output OUT --reconstructor MODEL...``."""
    parser = _Parser(prog="ctapipe-apply-models")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--reconstructor", action="append", default=[])
    opts, rest = parser.parse_known_args(args)
    models = _digest(opts.reconstructor)
    _write(opts.output, " ".join(["apply", _digest([opts.input]), models, *rest]), _size())


PROGRAMS: dict[str, Callable[[Sequence[str]], None]] = {
    "dirac_prod_run": _prod_run,
    "simtools-simulate-prod": _simpipe,
    "sim_telarray": _sim_telarray,
    "ctapipe-process": _one_to_one("ctapipe-process", "--input", "--output"),
    "evndisp": _one_to_one("evndisp", "-sourcefile", "-outputfile"),
    "ctapipe-merge": _merge,
    "ctapipe-train-energy-regressor": _train("ctapipe-train-energy-regressor"),
    "ctapipe-train-particle-classifier": _train("ctapipe-train-particle-classifier"),
    "ctapipe-apply-models": _apply,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in PROGRAMS:
        given = args[0] if args else "nothing"
        _say(f"standins: no stand-in for {given} (known: {', '.join(PROGRAMS)})")
        return 2
    try:
        seconds = _number(os.environ.get("CTAPROD_STANDIN_SECONDS") or "0", "SECONDS")
        rate = _number(os.environ.get("CTAPROD_STANDIN_FAILURE_RATE") or "0", "FAILURE_RATE")
        time.sleep(max(0.0, seconds))
        if random.random() < rate:  # a simulated failure, not cryptography
            _say(f"{args[0]} (stand-in): simulated failure (rate {rate:g})")
            return 1
        PROGRAMS[args[0]](args[1:])
    except StandinError as exc:
        _say(f"{args[0]} (stand-in): {exc}")
        return 2
    _say(f"{args[0]} (stand-in): done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
