"""``ctaprod job ...``: submit, follow, list and control jobs."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from ctaprod.cli.common import IdsArg, client, parse_ids
from ctaprod.cli.output import (
    chunks,
    compact_ids,
    emit,
    fmt_time,
    json_wanted,
    plural,
    print_note,
    say,
    status_rank,
    status_text,
    stderr,
    stdout,
    structured,
    table,
)
from ctaprod.cli.wait import existing_jobs, wait_for_jobs
from ctaprod.client.errors import ApiError
from ctaprod.client.http import Client
from ctaprod.client.submit import submit_file
from ctaprod.core.errors import CtaprodError
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import JobSummary
from ctaprod.core.schemas import MAX_BATCH, MAX_PAGE, JobFilter

app = typer.Typer(help="Submit, follow, inspect and control jobs.", no_args_is_help=True)


class Format(StrEnum):
    AUTO = "auto"
    JDL = "jdl"
    YAML = "yaml"
    JSON = "json"


class SummaryKey(StrEnum):
    SITE = "site"
    OWNER = "owner"
    OWNER_GROUP = "owner_group"
    JOB_GROUP = "job_group"
    JOB_TYPE = "job_type"


TimeoutOpt = Annotated[
    float | None, typer.Option(help="With --wait: give up after this many seconds (exit 1).")
]
IntervalOpt = Annotated[
    float, typer.Option(min=0.1, help="With --wait: the longest pause between two polls (s).")
]


def _finish_wait(
    cli: Client, ids: list[int], timeout: float | None, interval: float, as_json: bool = False
) -> NoReturn:
    """Wait for the jobs, print how they ended and exit with the code of the outcome."""
    result = wait_for_jobs(cli, ids, timeout=timeout, interval=interval)
    if as_json:
        statuses = {str(i): job.status.value for i, job in result.jobs.items()}
        typer.echo(json.dumps({"job_ids": ids, "statuses": statuses}))
    else:
        say(result.summary())
        if len(result.jobs) <= 50:
            stdout().print(_status_table(list(result.jobs.values())))
    if result.timed_out:
        result.report_timeout(timeout)
    raise typer.Exit(result.exit_code)


@app.command()
def submit(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, readable=True, help="Job descriptions."),
    ],
    fmt_: Annotated[Format, typer.Option("--format", "-f", help="Description format.")] = (
        Format.AUTO
    ),
    wait: Annotated[bool, typer.Option(help="Wait for the jobs like `job status --wait`.")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the job IDs (and with --wait the statuses) as JSON."),
    ] = False,
    timeout: TimeoutOpt = None,
    interval: IntervalOpt = 10.0,
) -> None:
    """Submit JDL, YAML or JSON job descriptions; local InputSandbox files are uploaded."""
    submitted: list[int] = []
    with client(ctx) as cli:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("submitting {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=stderr(),
            transient=True,
            disable=len(files) < 2,
        )
        with progress:
            task = progress.add_task("", total=len(files))
            for path in files:
                progress.update(task, description=path.name)
                try:
                    ids = submit_file(cli, path, fmt_.value)
                except (ApiError, CtaprodError) as exc:
                    if submitted:
                        print_note(f"already submitted: {compact_ids(submitted)}")
                    raise _in_file(exc, path) from None
                submitted.extend(ids)
                progress.advance(task)
                if not as_json:
                    say(f"{path.name}: submitted {plural(len(ids), 'job')}: {compact_ids(ids)}")
        if as_json and not wait:
            typer.echo(json.dumps({"job_ids": submitted}))
        elif not as_json and len(files) > 1:
            say(f"Total: {plural(len(submitted), 'job')}: {compact_ids(submitted)}")
        if wait:
            _finish_wait(cli, submitted, timeout, interval, as_json)


def _in_file(exc: ApiError | CtaprodError, path: Path) -> Exception:
    """The same error with the file name in front of its message."""
    if isinstance(exc, ApiError):
        return ApiError(exc.status, exc.code, f"{path}: {exc.message}", exc.detail)
    return CtaprodError(f"{path}: {exc.message}", **exc.detail)


def _status_table(jobs: list[JobSummary]) -> Table:
    tbl = table("ID", "Status", "Minor status", "Application status", "Site", "Last update")
    for job in jobs:
        tbl.add_row(
            str(job.job_id),
            status_text(job.status),
            job.minor_status,
            job.application_status,
            job.site,
            fmt_time(job.last_update),
        )
    return tbl


@app.command()
@structured
def status(
    ctx: typer.Context,
    ids: IdsArg,
    wait: Annotated[
        bool, typer.Option(help="Poll until all jobs are final; exit 0 all Done, 4 otherwise.")
    ] = False,
    timeout: TimeoutOpt = None,
    interval: IntervalOpt = 10.0,
) -> None:
    """Show the status of jobs, or wait for them to finish."""
    job_ids = parse_ids(ids)
    with client(ctx) as cli:
        if wait:
            _finish_wait(cli, job_ids, timeout, interval, json_wanted())
        jobs = existing_jobs(cli, job_ids)
    emit(list(jobs.values()), _status_table(list(jobs.values())))


@app.command("list")
@structured
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        list[JobStatus] | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Repeat for several."),
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Owner user name.")] = None,
    site: Annotated[str | None, typer.Option(help="Site the job ran at.")] = None,
    group: Annotated[str | None, typer.Option(help="Owner group.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Job type.")] = None,
    job_group: Annotated[str | None, typer.Option("--job-group", help="Job group.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Jobs to show.")] = 100,
    all_: Annotated[bool, typer.Option("--all", help="Show every matching job.")] = False,
    cursor: Annotated[
        int | None, typer.Option(help="Continue a previous listing (its next cursor).")
    ] = None,
) -> None:
    """List jobs, newest first."""
    flt = JobFilter(
        status=status or [],
        owner=owner,
        site=site,
        owner_group=group,
        job_type=job_type,
        job_group=job_group,
    )
    jobs: list[JobSummary] = []
    with client(ctx) as cli:
        while True:
            want = MAX_PAGE if all_ else min(MAX_PAGE, limit - len(jobs))
            page = cli.search(flt, limit=want, cursor=cursor)
            jobs.extend(page.jobs)
            cursor = page.next_cursor
            if cursor is None or (not all_ and len(jobs) >= limit):
                break
    tbl = table("ID", "Status", "Minor status", "Site", "Owner", "Name", "Type", "Last update")
    for job in jobs:
        tbl.add_row(
            str(job.job_id),
            status_text(job.status),
            job.minor_status,
            job.site,
            job.owner,
            job.job_name,
            job.job_type,
            fmt_time(job.last_update),
        )
    emit(jobs, tbl)
    more = f"; more with --all or --cursor {cursor}" if cursor is not None else ""
    print_note(f"{plural(len(jobs), 'job')}{more}")


@app.command()
@structured
def summary(
    ctx: typer.Context,
    by: Annotated[SummaryKey, typer.Option(help="Break the counts down by this.")] = (
        SummaryKey.SITE
    ),
) -> None:
    """Count jobs by status, broken down by site, owner, group, job group or job type."""
    with client(ctx) as cli:
        counts = cli.summary(by=by.value)
    statuses = sorted({s for row in counts.values() for s in row}, key=status_rank)
    tbl = table(by.value, *statuses, "Total")
    for column in tbl.columns[1:]:
        column.justify = "right"
    totals = dict.fromkeys(statuses, 0)
    for key in sorted(counts):
        row = counts[key]
        for s in statuses:
            totals[s] += row.get(s, 0)
        cells = (str(row[s]) if row.get(s) else "" for s in statuses)
        tbl.add_row(key or "-", *cells, str(sum(row.values())))
    tbl.add_section()
    tbl.add_row("Total", *(str(totals[s]) for s in statuses), str(sum(totals.values())))
    emit(counts, tbl)


@app.command()
def kill(ctx: typer.Context, ids: IdsArg) -> None:
    """Kill jobs (running ones stop at their next heartbeat)."""
    job_ids = parse_ids(ids)
    with client(ctx) as cli:
        for chunk in chunks(job_ids, MAX_BATCH):
            cli.kill(chunk)
    say(f"Killed {plural(len(job_ids), 'job')}: {compact_ids(job_ids)}")


@app.command()
def reschedule(ctx: typer.Context, ids: IdsArg) -> None:
    """Send jobs back to the task queue (Failed, Killed, stuck ones); prints their status."""
    job_ids = parse_ids(ids)
    statuses: dict[int, str] = {}
    with client(ctx) as cli:
        for chunk in chunks(job_ids, MAX_BATCH):
            statuses.update(cli.reschedule(chunk))
    tbl = table("ID", "Status")
    for job_id in job_ids:
        if job_id in statuses:
            tbl.add_row(str(job_id), status_text(statuses[job_id]))
    stdout().print(tbl)


@app.command()
def delete(ctx: typer.Context, ids: IdsArg) -> None:
    """Delete jobs (they are purged later by the cleaning agent)."""
    job_ids = parse_ids(ids)
    with client(ctx) as cli:
        for chunk in chunks(job_ids, MAX_BATCH):
            cli.delete(chunk)
    say(f"Deleted {plural(len(job_ids), 'job')}: {compact_ids(job_ids)}")
