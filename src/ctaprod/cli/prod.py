"""``ctaprod prod``: productions: submit or dry-run a YAML/JSON definition (any registered
format), list, show, status (a live view per step), log, drive (start, stop, flush, extend,
clean) and validate."""

from __future__ import annotations

import json
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
from ctaprod.core.prod_views import ProductionStatusView, ProductionView
from ctaprod.core.trans_states import TaskStatus, TransFileStatus
from ctaprod.core.transformations import load_definition

app = typer.Typer(
    help="Productions: multi-step workflows, one transformation per step.", no_args_is_help=True
)

RefArg = Annotated[str, typer.Argument(help="Production ID or name.", show_default=False)]
FileArg = Annotated[Path, typer.Argument(help="The definition (YAML or JSON).")]
NameOpt = Annotated[
    str | None, typer.Option("--name", help="The production's name (overrides the file's).")
]
McOpt = Annotated[int | None, typer.Option("--mc-tasks", min=1, help="Default number of MC tasks.")]
FILE_ORDER = [s.value for s in TransFileStatus]
TASK_ORDER = [s.value for s in TaskStatus]
FILES_DONE = {"Processed", "MaxReset", "Problematic", "Removed"}
ENDED = ("Completed", "Cleaned")


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_definition(text)


def _counts(counts: dict[str, int], order: list[str]) -> str:
    known = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    other = [f"{n} {s}" for s, n in counts.items() if s not in order and n]
    return ", ".join(known + other)


@app.command()
@structured
def submit(ctx: typer.Context, file: FileArg, name: NameOpt = None, mc_tasks: McOpt = None) -> None:
    """Create a production and every step's transformation, all or nothing (New: ``start``
    runs it)."""
    definition = _read(file)
    with client(ctx) as cli:
        view = cli.submit_production(definition, name=name, mc_tasks=mc_tasks)
    if json_wanted():
        emit(view)
        return
    steps = ", ".join(f"{s.step_id} -> {s.trans_id}" for s in view.steps)
    say(f"Production {view.prod_id} ({view.name}) created, {view.status}; steps {steps}")


@app.command("dry-run")
@structured
def dry_run(
    ctx: typer.Context, file: FileArg, name: NameOpt = None, mc_tasks: McOpt = None
) -> None:
    """What ``submit`` would create today: per step its transformation, input query, the files
    it matches now and the tasks it would make. Nothing is created."""
    definition = _read(file)
    with client(ctx) as cli:
        run = cli.dry_run_production(definition, name=name, mc_tasks=mc_tasks)
    tbl = table(
        "Step", "Parents", "Transformation", "Type", "Input query", "Files now", "Tasks",
        title=f"Dry run of {run.name} ({run.format} format): nothing created",
    )  # fmt: skip
    for s in run.steps:
        tbl.add_row(
            s.step_id,
            ", ".join(s.parents),
            s.trans_name,
            str(s.dry_run.definition.get("type")),
            s.input_query or "",
            str(s.dry_run.matching_files),
            str(s.dry_run.tasks),
        )
    emit(run, tbl)


@app.command("list")
@structured
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Repeat for several.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Owner user name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many.")] = 100,
) -> None:
    """List productions."""
    with client(ctx) as cli:
        found = cli.productions(status=status or [], owner=owner, limit=limit)
    tbl = table("ID", "Name", "Status", "Validation", "Owner", "Steps", "Last update")
    for p in found:
        tbl.add_row(
            str(p.prod_id),
            p.name,
            status_text(p.status),
            p.validation_status,
            p.owner,
            str(len(p.steps)),
            fmt_time(p.last_update),
        )
    emit(found, tbl)
    print_note(plural(len(found), "production"))


def _summary(view: ProductionView) -> Table:
    validation = view.validation_status
    if view.validated is not None:
        validation += f" ({fmt_time(view.validated)} by {view.validated_by})"
    return key_value_table(
        [
            ("Production", f"{view.prod_id} {view.name}"),
            ("Status", status_text(view.status)),
            ("Owner", f"{view.owner} ({view.owner_group})"),
            ("Description", view.description),
            ("Base path", view.definition.get("base_path")),
            ("Validation", validation),
            ("Created", view.created),
            ("Last update", view.last_update),
        ]
    )


@app.command()
@structured
def show(ctx: typer.Context, ref: RefArg) -> None:
    """Show a production: its steps and transformations, and the last validation."""
    with client(ctx) as cli:
        view = cli.production(ref)
    tbl = table("Step", "Name", "Parents", "Transformation", "Status", "Files", "Tasks")
    for s in view.steps:
        tbl.add_row(
            s.step_id,
            s.name,
            ", ".join(s.parents),
            f"{s.trans_id} {s.trans_name}",
            status_text(s.trans_status),
            _counts(s.files, FILE_ORDER),
            _counts(s.tasks, TASK_ORDER),
        )
    parts: list[Any] = [_summary(view), tbl]
    if view.validation_summary:
        parts.append(
            key_value_table(
                [(k, json.dumps(v) if isinstance(v, dict | list) else v)
                 for k, v in view.validation_summary.items()],
                title="Last validation",
            )
        )  # fmt: skip
    emit(view, Group(*parts))


def live_view(view: ProductionStatusView) -> Group:
    tbl = table(
        "Step", "Transformation", "Status", "Files", "", "Tasks", "Jobs", "Failures (by reason)",
        title=f"Production {view.prod_id} {view.name}: {view.status} "
        f"(validation {view.validation_status})",
    )  # fmt: skip
    for s in view.steps:
        total = sum(s.files.values())
        done = sum(n for st, n in s.files.items() if st in FILES_DONE)
        failures = "; ".join(f"{n}x {why[:60]}" for why, n in list(s.failures.items())[:3])
        tbl.add_row(
            s.step_id + (f" {s.name}" if s.name else ""),
            f"{s.trans_id}",
            status_text(s.trans_status),
            f"{done}/{total}",
            ProgressBar(total=total or 1, completed=done, width=20),
            _counts(s.tasks, TASK_ORDER),
            _counts(s.jobs, []),
            failures,
        )
    return Group(tbl)


@app.command()
@structured
def status(
    ctx: typer.Context,
    ref: RefArg,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh live until it ends (Ctrl-C stops).")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Per step: files, tasks and jobs by status, failures by reason (``--watch``: live)."""
    with client(ctx) as cli:
        view = cli.production_status(ref)
        if json_wanted():
            emit(view)
            return
        if not watch:
            stdout().print(live_view(view))
            return
        try:
            with Live(live_view(view), console=stdout(), auto_refresh=False) as live:
                while view.status not in ENDED:
                    time.sleep(interval)
                    view = cli.production_status(ref)
                    live.update(live_view(view), refresh=True)
        except KeyboardInterrupt:
            pass


@app.command()
@structured
def log(ctx: typer.Context, ref: RefArg) -> None:
    """Every action on a production: who, what, when."""
    with client(ctx) as cli:
        entries = cli.production_log(ref)
    tbl = table("Time", "Author", "Action", "Message")
    for e in entries:
        tbl.add_row(fmt_time(e.time), e.author, e.action, e.message)
    emit(entries, tbl)


def _drive(ctx: typer.Context, ref: str, action: str) -> None:
    with client(ctx) as cli:
        view = cli.drive_production(ref, action)
    say(f"Production {view.prod_id} ({view.name}) is {view.status}")


@app.command()
def start(ctx: typer.Context, ref: RefArg) -> None:
    """Start (or resume) every step."""
    _drive(ctx, ref, "start")


@app.command()
def stop(ctx: typer.Context, ref: RefArg) -> None:
    """Stop every step making and submitting tasks (running jobs go on)."""
    _drive(ctx, ref, "stop")


@app.command()
def flush(ctx: typer.Context, ref: RefArg) -> None:
    """The roots' input is complete: they flush; the children follow as their parents end."""
    _drive(ctx, ref, "flush")


@app.command()
def clean(ctx: typer.Context, ref: RefArg) -> None:
    """Clean every step (jobs killed, outputs removed from catalog and storage)."""
    _drive(ctx, ref, "clean")


@app.command()
def extend(
    ctx: typer.Context,
    ref: RefArg,
    tasks: Annotated[int, typer.Argument(min=1, help="More tasks on each MC step.")],
) -> None:
    """More MC tasks."""
    with client(ctx) as cli:
        view = cli.extend_production(ref, tasks)
    say(f"Production {view.prod_id} ({view.name}) is {view.status}; {tasks} more MC tasks")


@app.command()
@structured
def validate(
    ctx: typer.Context,
    ref: RefArg,
    checksum: Annotated[
        str, typer.Option(help="Verify checksums: full, sample or none.")
    ] = "sample",
    sample: Annotated[int, typer.Option(min=0, help="Files checked (sample).")] = 100,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the full report (JSON) there.")
    ] = None,
) -> None:
    """Validate a production; the outcome is recorded on it. Exit status 1 when invalid."""
    with client(ctx) as cli:
        outcome = cli.validate_production(ref, checksum=checksum, sample=sample)
    if report is not None:
        report.write_text(json.dumps(outcome.report, indent=2, default=str))
    lines = outcome.summary.get("lines") or []
    text = "\n".join(str(line) for line in lines) or outcome.validation_status
    emit(outcome, Text(f"{text}\nProduction {outcome.prod_id}: {outcome.validation_status}"))
    if outcome.validation_status != "Valid":
        raise typer.Exit(1)
