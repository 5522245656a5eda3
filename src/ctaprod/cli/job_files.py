"""``ctaprod job history|show|logs|output``: look into one job and fetch what it produced."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.rule import Rule
from rich.text import Text

from ctaprod.cli.common import client
from ctaprod.cli.output import (
    emit,
    fmt,
    fmt_time,
    json_wanted,
    key_value_table,
    print_note,
    status_text,
    stdout,
    structured,
    table,
)
from ctaprod.core.archive import safe_extract

JobIdArg = Annotated[int, typer.Argument(min=1, help="Job ID.", show_default=False)]

# Attributes shown by ``job show``, in this order (the description has the rest).
SHOWN = (
    "status", "minor_status", "application_status", "owner", "owner_group", "job_name",
    "job_group", "job_type", "site", "priority", "pilot_id", "reschedule_count", "exit_code",
    "submission_time", "start_time", "end_time", "heartbeat_time", "last_update",
    "cpu_seconds", "wall_seconds", "peak_rss_bytes",
)  # fmt: skip


@structured
def history(ctx: typer.Context, job_id: JobIdArg) -> None:
    """Show the status changes of a job."""
    with client(ctx) as cli:
        entries = cli.history(job_id)
    tbl = table("Time", "Status", "Minor status", "Application status", "Source")
    for entry in entries:
        tbl.add_row(
            fmt_time(entry.time),
            status_text(entry.status),
            entry.minor_status,
            entry.application_status,
            entry.source,
        )
    emit(entries, tbl)


@structured
def show(ctx: typer.Context, job_id: JobIdArg) -> None:
    """Show a job: its attributes, its JDL and its parameters."""
    with client(ctx) as cli:
        job = cli.job(job_id)
    if json_wanted():
        emit(job)
        return
    out = stdout()
    rows: list[tuple[str, Any]] = [("job_id", job.job_id)]
    for name in SHOWN:
        value = getattr(job, name)
        if value not in (None, ""):
            rows.append((name, status_text(value) if name == "status" else value))
    out.print(key_value_table(rows, title=f"Job {job.job_id}"))
    out.print(Rule("JDL", align="left"))
    out.print(job.jdl, markup=False, highlight=False)
    if job.parameters:
        params = table("Parameter", "Value")
        for key in sorted(job.parameters):
            params.add_row(key, fmt(job.parameters[key]))
        out.print(params)


def logs(ctx: typer.Context, job_id: JobIdArg) -> None:
    """Print the standard output and error of a finished job (from its output sandbox)."""
    with client(ctx) as cli, tempfile.TemporaryDirectory(prefix="ctaprod-") as tmp:
        job = cli.job(job_id)
        archive = Path(tmp) / "output.tar.gz"
        cli.download_output(job_id, archive)
        extracted = Path(tmp) / "output"
        safe_extract(archive, extracted)
        out = stdout()
        for name in dict.fromkeys([job.description.std_output, job.description.std_error]):
            path = extracted / name
            out.print(Rule(Text(name), align="left"))
            if path.is_file():
                typer.echo(path.read_text(errors="replace"), nl=False)
            else:
                print_note(f"{name} is not in the output sandbox of job {job_id}")


def output(
    ctx: typer.Context,
    job_id: JobIdArg,
    directory: Annotated[
        Path, typer.Option("--dir", "-d", file_okay=False, help="Extract into DIR/<job id>/.")
    ] = Path("."),
) -> None:
    """Download and extract the output sandbox of a job, then list its files."""
    dest = directory / str(job_id)
    directory.mkdir(parents=True, exist_ok=True)
    with client(ctx) as cli, tempfile.TemporaryDirectory(dir=directory, prefix=".ctaprod-") as tmp:
        archive = Path(tmp) / "output.tar.gz"
        cli.download_output(job_id, archive)
        names = safe_extract(archive, dest)
    tbl = table("File", "Bytes", title=f"Output of job {job_id} in {dest}")
    tbl.columns[1].justify = "right"
    for name in sorted(names):
        path = dest / name
        if path.is_file():
            tbl.add_row(name, str(path.stat().st_size))
    stdout().print(tbl)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``job`` group."""
    app.command()(history)
    app.command()(show)
    app.command()(logs)
    app.command()(output)
