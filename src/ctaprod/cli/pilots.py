"""``ctaprod pilot ...``: look at pilots, or run one on this (worker) node."""

from __future__ import annotations

from typing import Annotated

import typer

from ctaprod.cli.common import client
from ctaprod.cli.output import emit, fmt_time, key_value_table, print_note, structured, table
from ctaprod.core.pilot_states import PilotStatus

app = typer.Typer(help="Pilots: list, inspect, or run one here.", no_args_is_help=True)

PilotIdArg = Annotated[int, typer.Argument(min=1, help="Pilot ID.", show_default=False)]


@app.command("list")
@structured
def list_pilots(
    ctx: typer.Context,
    status: Annotated[
        list[PilotStatus] | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Repeat for several."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Pilots to show.")] = 100,
) -> None:
    """List pilots (operators and job administrators)."""
    with client(ctx) as cli:
        rows = cli.pilots([s.value for s in status or []], limit=limit)
    tbl = table("ID", "Site", "CE", "Queue", "Status", "Reason", "Jobs done", "Last update")
    for p in rows:
        tbl.add_row(
            str(p.pilot_id),
            p.site,
            p.ce,
            p.queue,
            p.status,
            p.status_reason,
            str(p.jobs_done),
            fmt_time(p.last_update),
        )
    emit(rows, tbl)
    print_note(f"{len(rows)} pilot(s)")


@app.command()
@structured
def show(ctx: typer.Context, pilot_id: PilotIdArg) -> None:
    """Show one pilot."""
    with client(ctx) as cli:
        pilot = cli.pilot(pilot_id)
    emit(pilot, key_value_table(pilot.model_dump().items(), title=f"Pilot {pilot_id}"))


@app.command()
def logs(ctx: typer.Context, pilot_id: PilotIdArg) -> None:
    """Print the log a pilot uploaded."""
    with client(ctx) as cli:
        text = cli.pilot_log(pilot_id)
    typer.echo(text, nl=not text.endswith("\n"))


@app.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
def run(
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Pilot options (see `ctaprod pilot run --help`).", show_default=False),
    ] = None,
) -> None:
    """Run a pilot here: ask the server for jobs and run them (worker-node command)."""
    from ctaprod.pilot.__main__ import main as pilot_main

    raise typer.Exit(pilot_main(list(args or [])))
