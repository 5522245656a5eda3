"""``ctaprod dm``: data management: the file catalog, transfers, metadata, datasets.

This module holds the catalog commands (ls, mkdir, register, replicas, ancestors,
descendants); ``dm_data`` and ``dm_meta`` add theirs to the same ``app``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ctaprod.cli.common import client
from ctaprod.cli.output import (
    emit,
    emit_stream,
    fmt,
    fmt_time,
    plural,
    print_warning,
    say,
    stderr,
    stdout,
    structured,
    table,
)
from ctaprod.core.catalog import DirEntry, FileInfo, FileRegistration, Relative
from ctaprod.core.errors import InvalidInput

app = typer.Typer(
    help="Data management: the file catalog, transfers, metadata, datasets.", no_args_is_help=True
)

DepthOpt = Annotated[int, typer.Option("--depth", "-d", min=1, help="Generations to follow.")]
_REGS = TypeAdapter(list[FileRegistration])


def _long(
    kind: str, owner: str | None, group: str | None, size: int | None, created: Any, name: str
) -> str:
    size_text = "" if size is None else str(size)
    if not stdout().is_terminal:  # one tab-separated row per entry, for cut and awk
        return "\t".join((kind, owner or "", group or "", size_text, fmt_time(created), name))
    return f"{kind} {owner or '':<12} {group or '':<16} {size_text:>14} {fmt_time(created)}  {name}"


def _entry_line(entry: DirEntry, long: bool) -> str:
    name = entry.name + ("/" if entry.kind == "dir" else "")
    if not long:
        return name
    kind = "d" if entry.kind == "dir" else "-"
    return _long(kind, entry.owner, entry.owner_group, entry.size, entry.created, name)


@app.command("ls")
@structured
def ls(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A directory or a file (LFN).")] = "/",
    long: Annotated[
        bool, typer.Option("--long", "-l", help="Owner, group, size and time.")
    ] = False,
) -> None:
    """List a directory (subdirectories first, then files, by name), streamed."""
    with client(ctx) as cli:
        info = cli.stat(path)
        if isinstance(info, FileInfo):
            name = info.lfn
            line = (
                _long("-", info.owner, info.owner_group, info.size, info.created, name)
                if long
                else name
            )
            emit_stream([info], lambda _: line)
            return
        emit_stream(cli.listdir(path, long=long), lambda entry: _entry_line(entry, long))


@app.command("mkdir")
def mkdir(ctx: typer.Context, path: Annotated[str, typer.Argument(help="Directory LFN.")]) -> None:
    """Create a directory and its missing parents."""
    with client(ctx) as cli:
        info = cli.mkdir(path)
    say(f"{info.path} (owner {info.owner}, group {info.owner_group})")


def _read_registrations(path: Path) -> list[FileRegistration]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        docs: Any = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append(json.loads(line))
                except ValueError as exc:
                    raise InvalidInput(f"{path}:{number}: not JSON ({exc})") from None
    else:
        try:
            docs = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"{path}: not JSON ({exc})") from None
        docs = docs if isinstance(docs, list) else [docs]
    return _REGS.validate_python(docs)


@app.command("register")
def register(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="JSON list or JSON lines (.jsonl)."
        ),
    ],
    verify: Annotated[
        bool | None,
        typer.Option("--verify/--no-verify", help="Check size and checksum on the SE."),
    ] = None,
) -> None:
    """Register files (lfn, size, checksum, se, guid, metadata, parents) in bulk."""
    regs = _read_registrations(file)
    progress = Progress(
        TextColumn("registering"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr(),
        transient=True,
        disable=len(regs) < 1000,
    )
    with client(ctx) as cli, progress:
        task = progress.add_task("", total=len(regs))
        ids = cli.register_files(regs, lambda n: progress.advance(task, n), verify=verify)
    say(f"registered {plural(len(ids), 'file')}")


@app.command("replicas")
@structured
def replicas(ctx: typer.Context, lfns: Annotated[list[str], typer.Argument(help="LFNs.")]) -> None:
    """The replicas of files."""
    with client(ctx) as cli:
        found = cli.files(lfns)
    tbl = table("LFN", "SE", "Size", "ADLER32")
    for lfn in lfns:
        info = found.get(lfn.removeprefix("LFN:"))
        if info is not None:
            for se in info.replicas or [""]:
                tbl.add_row(info.lfn, se, fmt(info.size), info.checksum)
    emit(
        [found[lfn.removeprefix("LFN:")] for lfn in lfns if lfn.removeprefix("LFN:") in found], tbl
    )
    missing = [lfn for lfn in lfns if lfn.removeprefix("LFN:") not in found]
    if missing:
        print_warning(f"not in the catalog: {', '.join(missing)}")
        raise typer.Exit(1)


def _relatives(rows: list[Relative], title: str) -> None:
    tbl = table("Depth", "LFN", title=title)
    for rel in rows:
        tbl.add_row(str(rel.depth), rel.lfn)
    emit(rows, tbl)


@app.command("ancestors")
@structured
def ancestors(
    ctx: typer.Context, lfn: Annotated[str, typer.Argument()], depth: DepthOpt = 1
) -> None:
    """The files an LFN was made from (depth 1: its parents)."""
    with client(ctx) as cli:
        _relatives(cli.ancestors(lfn, depth), f"ancestors of {lfn}")


@app.command("descendants")
@structured
def descendants(
    ctx: typer.Context, lfn: Annotated[str, typer.Argument()], depth: DepthOpt = 1
) -> None:
    """The files made from an LFN (depth 1: its children)."""
    with client(ctx) as cli:
        _relatives(cli.descendants(lfn, depth), f"descendants of {lfn}")
