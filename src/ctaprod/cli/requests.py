"""``ctaprod request``: requests: the failover operations and their status."""

from __future__ import annotations

from typing import Annotated

import typer

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
from ctaprod.core.requests import RequestInfo, RequestStatus, RequestSummary
from ctaprod.core.schemas import MAX_PAGE

app = typer.Typer(help="Requests: the failover operations and their status.", no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(min=1, help="Request ID.", show_default=False)]


@app.command("list")
@structured
def list_requests(
    ctx: typer.Context,
    status: Annotated[
        list[RequestStatus] | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Repeat for several."),
    ] = None,
    job: Annotated[int | None, typer.Option("--job", help="Requests of this job.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner user name.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Requests to show.")] = 100,
    all_: Annotated[bool, typer.Option("--all", help="Show every matching request.")] = False,
) -> None:
    """List requests, newest first."""
    found: list[RequestSummary] = []
    cursor: int | None = None
    with client(ctx) as cli:
        while True:
            want = MAX_PAGE if all_ else min(MAX_PAGE, limit - len(found))
            page = cli.requests(
                status=status or [], owner=owner, job_id=job, limit=want, cursor=cursor
            )
            found.extend(page.requests)
            cursor = page.next_cursor
            if cursor is None or (not all_ and len(found) >= limit):
                break
    tbl = table("ID", "Status", "Name", "Owner", "Job", "Not before", "Last update", "Error")
    for r in found:
        tbl.add_row(
            str(r.request_id),
            status_text(r.status),
            r.name,
            r.owner,
            fmt(r.job_id),
            fmt_time(r.not_before) if r.status is RequestStatus.WAITING else "",
            fmt_time(r.last_update),
            r.error,
        )
    emit(found, tbl)
    more = "; more with --all" if cursor is not None else ""
    print_note(f"{plural(len(found), 'request')}{more}")


def _show(info: RequestInfo) -> None:
    out = stdout()
    out.print(
        key_value_table(
            [
                ("Request", info.request_id),
                ("Name", info.name),
                ("Status", status_text(info.status)),
                ("Owner", f"{info.owner} ({info.owner_group})"),
                ("Job", info.job_id),
                ("Created", info.created),
                ("Last update", info.last_update),
                ("Not before", info.not_before),
                ("Assigned to", info.assigned_by),
                (
                    "Lease until",
                    info.lease_until if info.status is RequestStatus.ASSIGNED else None,
                ),
                ("Error", info.error),
            ]
        )
    )
    ops = table("#", "Operation", "Status", "Arguments", "Files", "Error", title="Operations")
    for op in info.operations:
        args = ", ".join(
            f"{k}={fmt(v)}" for k, v in op.arguments.items() if v not in ({}, [], None, "")
        )
        done = sum(1 for f in op.files if f.status == "Done")
        ops.add_row(
            str(op.position + 1),
            op.type,
            status_text(op.status),
            args,
            f"{done}/{len(op.files)}" if op.files else "",
            op.error,
        )
    out.print(ops)
    files = table("#", "LFN", "Status", "Attempts", "Error", title="Files")
    for op in info.operations:
        for f in op.files:
            files.add_row(
                str(op.position + 1), f.lfn, status_text(f.status), str(f.attempts), f.error
            )
    if files.row_count:
        out.print(files)


@app.command()
@structured
def show(ctx: typer.Context, request_id: IdArg) -> None:
    """Show a request: its operations, their files and errors."""
    with client(ctx) as cli:
        info = cli.request_info(request_id)
    if json_wanted():
        emit(info)
    else:
        _show(info)


@app.command()
def retry(ctx: typer.Context, request_id: IdArg) -> None:
    """Retry a stuck request now: a Failed one (its failed files start again), one whose
    executor died (lease passed) or one waiting out a backoff. Done, Canceled and requests
    a live executor holds are refused."""
    with client(ctx) as cli:
        info = cli.retry_request(request_id)
    say(f"Request {request_id} is {info.status.value}")


@app.command()
def cancel(ctx: typer.Context, request_id: IdArg) -> None:
    """Cancel a Waiting or Assigned request."""
    with client(ctx) as cli:
        info = cli.cancel_request(request_id)
    say(f"Request {request_id} is {info.status.value}")
