"""``python -m ctaprod.cta.run``: the launcher every CTA job template calls.

::

    python -m ctaprod.cta.run [--software MODE] --package P --version V
        [--inputs LFN...] [--outputs LFN...] [--each] [--collect GLOB]... -- PROGRAM ARGS...

It runs PROGRAM with the site's CTA software (:mod:`ctaprod.cta.software`) in the job's
working directory, where the job wrapper put the input files and takes the outputs from,
each under its LFN's file name. In ARGS, ``@INPUTS@`` becomes the input files' names,
``@IN@`` and ``@OUT@`` one input's and one output's. ``--each`` runs PROGRAM once per input
file, with the output of the same position (ctapipe-process reads one file). ``--collect
GLOB`` (once per output, in order) moves the one file matching GLOB, where the program wrote
it, to its output's name (sim_telarray names its files itself). Exit status: the program's,
or 2 when the job's own arguments or the collected files are wrong (message on stderr).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
from collections.abc import Sequence

from ctaprod.cta.software import MODES, SoftwareError, choose, command

__all__ = ["main"]


def _say(message: str) -> None:
    """One line on stderr: the job's StdError keeps it."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class LaunchError(Exception):
    """The launch cannot go on; the message says why."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ctaprod.cta.run")
    parser.add_argument("--software", default="standin", help=f"default mode: {', '.join(MODES)}")
    parser.add_argument("--package", required=True, help="software package (CVMFS, image)")
    parser.add_argument("--version", required=True, help="software version")
    parser.add_argument("--inputs", nargs="+", default=[], metavar="LFN")
    parser.add_argument("--outputs", nargs="+", default=[], metavar="LFN")
    parser.add_argument("--each", action="store_true", help="run once per input file")
    parser.add_argument("--collect", action="append", default=[], metavar="GLOB")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    return parser


def _name(lfn: str) -> str:
    return lfn.rsplit("/", 1)[-1]


def _filled(args: Sequence[str], inputs: Sequence[str], one_in: str, one_out: str) -> list[str]:
    out: list[str] = []
    for arg in args:
        if arg == "@INPUTS@":
            out.extend(inputs)
        else:
            out.append(arg.replace("@IN@", one_in).replace("@OUT@", one_out))
    return out


def _collect(patterns: Sequence[str], outputs: Sequence[str]) -> None:
    if len(patterns) != len(outputs):
        raise LaunchError(f"{len(patterns)} --collect patterns for {len(outputs)} outputs")
    for pattern, target in zip(patterns, outputs, strict=True):
        found = sorted(glob.glob(pattern))
        if len(found) != 1:
            what = "no file" if not found else f"{len(found)} files ({', '.join(found[:3])})"
            raise LaunchError(f"output {target}: {what} matches {pattern!r}")
        os.replace(found[0], target)


def main(argv: Sequence[str] | None = None) -> int:
    opts = _parser().parse_args(argv)
    program = opts.program[1:] if opts.program[:1] == ["--"] else opts.program
    try:
        if not program:
            raise LaunchError("no program to run (give it after --)")
        mode = choose(opts.software, os.environ)
        inputs = [_name(i) for i in opts.inputs]
        outputs = [_name(o) for o in opts.outputs]
        if opts.each:
            if len(inputs) != len(outputs):
                raise LaunchError(f"--each: {len(inputs)} inputs for {len(outputs)} outputs")
            runs = [
                _filled(program[1:], inputs, i, o) for i, o in zip(inputs, outputs, strict=True)
            ]
        else:
            first_in, first_out = (inputs or [""])[0], (outputs or [""])[0]
            runs = [_filled(program[1:], inputs, first_in, first_out)]
        for args in runs:
            cmd = command(
                program[0],
                args,
                mode=mode,
                package=opts.package,
                version=opts.version,
                env=os.environ,
            )
            _say(f"ctaprod.cta.run ({mode}): {' '.join(cmd)}")
            try:
                code = subprocess.call(cmd)
            except OSError as exc:
                raise LaunchError(f"cannot run {cmd[0]}: {exc}") from None
            if code != 0:
                _say(f"ctaprod.cta.run: {program[0]} exited with {code}")
                return code
        if opts.collect:
            _collect(opts.collect, outputs)
    except (LaunchError, SoftwareError) as exc:
        _say(f"ctaprod.cta.run: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
