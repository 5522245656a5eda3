"""``ctaprod se``: storage elements: list, show (with the history of bans), ban and allow."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from ctaprod.cli.common import client
from ctaprod.cli.output import emit, fmt, fmt_time, key_value_table, say, structured, table
from ctaprod.core.storage import BanAccess, StorageElementInfo

app = typer.Typer(help="Storage elements: list, show, ban and allow.", no_args_is_help=True)

SEArg = Annotated[str, typer.Argument(help="Storage element name.", show_default=False)]
ReadOpt = Annotated[bool, typer.Option("--read", help="Only reading.")]
WriteOpt = Annotated[bool, typer.Option("--write", help="Only writing.")]


def _access(read: bool, write: bool) -> BanAccess:
    if read and not write:
        return "read"
    if write and not read:
        return "write"
    return "both"


def _flag(allowed: bool) -> Text:
    return Text("yes" if allowed else "no", style="green" if allowed else "red")


def _reasons(se: StorageElementInfo) -> str:
    if se.read_reason and se.read_reason == se.write_reason:
        return se.read_reason
    parts = [f"read: {se.read_reason}" if se.read_reason else ""]
    parts.append(f"write: {se.write_reason}" if se.write_reason else "")
    return "; ".join(p for p in parts if p)


@app.command("list")
@structured
def list_ses(ctx: typer.Context) -> None:
    """List the storage elements and whether they may be read and written."""
    with client(ctx) as cli:
        rows = cli.se_list()
    tbl = table("SE", "Plugin", "Site", "Read", "Write", "Reasons", "Groups")
    for se in rows:
        tbl.add_row(
            se.name,
            se.plugin,
            se.site,
            _flag(se.read),
            _flag(se.write),
            _reasons(se),
            fmt(se.groups),
        )
    emit(rows, tbl)


@app.command("show")
@structured
def show(ctx: typer.Context, se: SEArg) -> None:
    """Show one storage element and the history of its bans."""
    with client(ctx) as cli:
        detail = cli.se_show(se)
    info = detail.element
    summary = key_value_table(
        [
            ("Name", info.name),
            ("Plugin", info.plugin),
            ("Endpoint", info.endpoint),
            ("Base path", info.base_path),
            ("Site", info.site),
            ("Groups", info.groups),
            ("Read", _flag(info.read)),
            ("Read reason", info.read_reason),
            ("Write", _flag(info.write)),
            ("Write reason", info.write_reason),
            *[(f"Option {k}", v) for k, v in sorted(info.options.items())],
        ],
        title=info.name,
    )
    tbl = table("Time", "Access", "Allowed", "Reason", "By", title="History")
    for entry in detail.history:
        tbl.add_row(
            fmt_time(entry.time), entry.access, _flag(entry.allowed), entry.reason, entry.author
        )
    emit(detail, summary, tbl)


@app.command("ban")
def ban(
    ctx: typer.Context,
    se: SEArg,
    reason: Annotated[str, typer.Option(help="Why (shown in se list).", show_default=False)],
    read: ReadOpt = False,
    write: WriteOpt = False,
) -> None:
    """Ban a storage element for reading and writing (or only --read / --write)."""
    access = _access(read, write)
    with client(ctx) as cli:
        cli.se_ban(se, access, reason)
    say(f"Banned {se} for {'read and write' if access == 'both' else access}")


@app.command("allow")
def allow(
    ctx: typer.Context,
    se: SEArg,
    read: ReadOpt = False,
    write: WriteOpt = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "",
) -> None:
    """Allow a banned storage element again (or only --read / --write)."""
    access = _access(read, write)
    with client(ctx) as cli:
        info = cli.se_allow(se, access, reason)
    say(f"Allowed {se} for {'read and write' if access == 'both' else access}")
    if not (info.read and info.write):
        say(f"Still not allowed: {_reasons(info)}")
