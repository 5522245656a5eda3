"""``ctaprod trans``: transformations: create from YAML/JSON, list, show, files, tasks, log,
drive (start, stop, flush, extend, clean, rescan) and watch their progress live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ctaprod.cli.common import client
from ctaprod.cli.output import (
    emit,
    fmt,
    fmt_time,
    json_wanted,
    key_value_table,
    plural,
    print_note,
    say,
    status_text,
    stdout,
    structured,
    table,
)
from ctaprod.core.errors import InvalidInput
from ctaprod.core.trans_states import TaskStatus, TransFileStatus
from ctaprod.core.trans_views import TransformationView
from ctaprod.core.transformations import load_definition

app = typer.Typer(
    help="Transformations: data-driven tasks from catalog queries.", no_args_is_help=True
)

RefArg = Annotated[str, typer.Argument(help="Transformation ID or name.", show_default=False)]
FILE_ORDER = [s.value for s in TransFileStatus]
TASK_ORDER = [s.value for s in TaskStatus]


def _read_definition(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_definition(text)


@app.command()
@structured
def create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The definition (YAML or JSON).")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the files it matches today and the tasks it would "
                     "make; create nothing."),
    ] = False,
    start: Annotated[bool, typer.Option("--start", help="Start it at once (else New).")] = False,
) -> None:  # fmt: skip
    """Create a transformation from a YAML or JSON definition; its existing input files are
    attached at once, new ones as they are registered."""
    definition = _read_definition(file)
    with client(ctx) as cli:
        if dry_run:
            run = cli.dry_run_transformation(definition)
            if json_wanted():
                emit(run)
                return
            out = stdout()
            out.print(
                key_value_table(
                    [
                        ("Name", run.definition.get("name")),
                        ("Type", run.definition.get("type")),
                        ("Input query", run.definition.get("input_query")),
                        ("Files matching today", run.matching_files),
                        ("Files grouped below", run.grouped_files),
                        ("Tasks it would make now", run.tasks),
                        ("Files waiting for a fuller group", run.leftover_files),
                        ("Files of the first tasks", ", ".join(map(str, run.task_sizes))),
                    ],
                    title="Dry run: nothing created",
                )
            )
            if run.sample_lfns:
                lfns = table("LFN", title=f"First {len(run.sample_lfns)} matching files")
                for lfn in run.sample_lfns:
                    lfns.add_row(lfn)
                out.print(lfns)
            return
        view = cli.create_transformation(definition, start=start)
    if json_wanted():
        emit(view)
        return
    say(
        f"Transformation {view.trans_id} ({view.name}) created, {view.status}; "
        f"{plural(sum(view.files.values()), 'input file')} attached"
    )


@app.command("list")
@structured
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Repeat for several.")
    ] = None,
    type_: Annotated[list[str] | None, typer.Option("--type", "-t", help="Type.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner user name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many.")] = 100,
) -> None:
    """List transformations with their files and tasks by status."""
    with client(ctx) as cli:
        found = cli.transformations(status=status or [], type=type_ or [], owner=owner, limit=limit)
    tbl = table("ID", "Name", "Type", "Status", "Owner", "Files", "Tasks", "Last update")
    for t in found:
        tbl.add_row(
            str(t.trans_id),
            t.name,
            t.type,
            status_text(t.status),
            t.owner,
            _counts(t.files, FILE_ORDER),
            _counts(t.tasks, TASK_ORDER),
            fmt_time(t.last_update),
        )
    emit(found, tbl)
    print_note(plural(len(found), "transformation"))


def _counts(counts: dict[str, int], order: list[str]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))


def _summary(view: TransformationView) -> Table:
    return key_value_table(
        [
            ("Transformation", f"{view.trans_id} {view.name}"),
            ("Type", view.type),
            ("Status", status_text(view.status)),
            ("Owner", f"{view.owner} ({view.owner_group})"),
            ("Description", view.description),
            ("Input query", view.input_query),
            ("Grouping", f"{view.plugin} by {view.group_size}" if view.plugin else None),
            ("Tasks made", f"{view.tasks_created}" + (
                f" of at most {view.max_tasks}" if view.max_tasks else "")),
            ("Input complete", "yes" if view.input_complete else "no"),
            ("Max errors per file", view.max_errors),
            ("Created", view.created),
            ("Last update", view.last_update),
        ]
    )  # fmt: skip


def _bars(title: str, counts: dict[str, int], order: list[str], done: set[str]) -> Table:
    """One bar per status, and the share of the total that is finished."""
    total = sum(counts.values())
    tbl = table("Status", "Count", "", title=title)
    for status in order:
        n = counts.get(status, 0)
        if n:
            tbl.add_row(
                status_text(status), str(n), ProgressBar(total=total or 1, completed=n, width=30)
            )
    finished = sum(counts.get(s, 0) for s in done)
    tbl.add_row(
        "finished",
        f"{finished}/{total}",
        ProgressBar(total=total or 1, completed=finished, width=30),
    )
    return tbl  # fmt: skip


def _progress(view: TransformationView) -> Group:
    return Group(
        _summary(view),
        _bars("Files", view.files, FILE_ORDER, {"Processed", "MaxReset", "Problematic", "Removed"}),
        _bars("Tasks", view.tasks, TASK_ORDER, {"Done", "Failed", "Killed"}),
    )  # fmt: skip


@app.command()
@structured
def show(
    ctx: typer.Context,
    ref: RefArg,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh live until it ends (Ctrl-C stops).")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Show a transformation: its definition, files and tasks by status (``--watch``: live)."""
    with client(ctx) as cli:
        view = cli.transformation(ref)
        if json_wanted():
            emit(view)
            return
        if not watch:
            stdout().print(_progress(view))
            return
        try:
            with Live(_progress(view), console=stdout(), auto_refresh=False) as live:
                while view.status not in ("Completed", "Cleaned"):
                    time.sleep(interval)
                    view = cli.transformation(ref)
                    live.update(_progress(view), refresh=True)
        except KeyboardInterrupt:
            pass


@app.command()
@structured
def files(
    ctx: typer.Context,
    ref: RefArg,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Repeat for several.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many.")] = 1000,
) -> None:
    """The files of a transformation and where each stands."""
    out = []
    with client(ctx) as cli:
        for f in cli.iter_transformation_files(ref, status=status or []):
            out.append(f)
            if len(out) >= limit:
                break
    tbl = table("LFN", "Status", "Task", "Errors", "Why (MaxReset: every failure)", "Last update")
    for f in out:
        tbl.add_row(
            f.lfn or f"<file {f.file_id} removed>",
            status_text(f.status),
            fmt(f.task_id),
            str(f.error_count),
            " | ".join(f.failures) if f.failures else f.last_error,
            fmt_time(f.last_update),
        )
    emit(out, tbl)
    print_note(plural(len(out), "file"))


@app.command()
@structured
def tasks(
    ctx: typer.Context,
    ref: RefArg,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Repeat for several.")
    ] = None,
    inputs: Annotated[bool, typer.Option("--inputs", help="Show the input files.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many.")] = 1000,
) -> None:
    """The tasks of a transformation with their jobs."""
    with client(ctx) as cli:
        found = cli.transformation_tasks(ref, status=status or [], limit=limit, inputs=inputs)
    columns = ["Task", "Status", "Run", "Job", "Created", "Ended", "Error"]
    tbl = table(*columns, *(["Inputs"] if inputs else []))
    for t in found:
        row: list[str | Text] = [
            str(t.task_id),
            status_text(t.status),
            fmt(t.run_number),
            fmt(t.job_id if t.job_id is not None else t.request_id),
            fmt_time(t.created),
            fmt_time(t.ended),
            t.error,
        ]
        tbl.add_row(*row, *(["\n".join(t.inputs)] if inputs else []))
    emit(found, tbl)
    print_note(plural(len(found), "task"))


@app.command()
@structured
def log(ctx: typer.Context, ref: RefArg) -> None:
    """Every action on a transformation: who, what, when."""
    with client(ctx) as cli:
        entries = cli.transformation_log(ref)
    tbl = table("Time", "Author", "Action", "Message")
    for e in entries:
        tbl.add_row(fmt_time(e.time), e.author, e.action, e.message)
    emit(entries, tbl)


def _drive(ctx: typer.Context, ref: str, action: str) -> None:
    with client(ctx) as cli:
        view = cli.drive_transformation(ref, action)
    say(f"Transformation {view.trans_id} ({view.name}) is {view.status}")


@app.command()
def start(ctx: typer.Context, ref: RefArg) -> None:
    """Start it: tasks are made and submitted."""
    _drive(ctx, ref, "start")


@app.command()
def stop(ctx: typer.Context, ref: RefArg) -> None:
    """Stop making and submitting tasks (files still attach; running jobs go on)."""
    _drive(ctx, ref, "stop")


@app.command()
def flush(
    ctx: typer.Context,
    ref: RefArg,
    input_complete: Annotated[
        bool,
        typer.Option("--input-complete", help="No more input will come: flush, then complete."),
    ] = False,
) -> None:
    """Make the last, smaller groups now."""
    _drive(ctx, ref, "input-complete" if input_complete else "flush")


@app.command()
def clean(ctx: typer.Context, ref: RefArg) -> None:
    """Kill its live tasks, remove the files its jobs registered (catalog and storage), end it
    (Cleaning, then Cleaned)."""
    _drive(ctx, ref, "clean")


@app.command()
def extend(
    ctx: typer.Context,
    ref: RefArg,
    query: Annotated[str | None, typer.Option(help="A new input query.")] = None,
    max_tasks: Annotated[
        int | None, typer.Option("--max-tasks", min=1, help="MCSimulation: more tasks.")
    ] = None,
) -> None:
    """Give it a new input query (the files it matches are attached now) or more tasks."""
    with client(ctx) as cli:
        view = cli.extend_transformation(ref, query=query, max_tasks=max_tasks)
    say(
        f"Transformation {view.trans_id} ({view.name}) is {view.status}; "
        f"{plural(sum(view.files.values()), 'file')}, max tasks {fmt(view.max_tasks)}"
    )


@app.command()
def rescan(ctx: typer.Context, ref: RefArg) -> None:
    """Repair: run its input query over the whole catalog and attach what is missing."""
    with client(ctx) as cli:
        result = cli.rescan_transformation(ref)
    say(f"{plural(result.matching_files, 'file')} match, {result.attached} newly attached")
