"""``ctaprod dm put | get | rm | replicate``: transfers between local files, SEs and the
catalog, with progress bars on stderr; ``ctaprod dm check``: catalog <-> storage
consistency."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ctaprod.cli.common import client
from ctaprod.cli.output import print_error, say, stderr, stdout, table
from ctaprod.client.errors import ApiError
from ctaprod.core.consistency import DEFAULT_LIMIT, DEFAULT_STALE_AGE, KINDS, MAX_LIMIT
from ctaprod.core.errors import CtaprodError
from ctaprod.core.lfn import check_lfn, split

LfnsArg = Annotated[list[str], typer.Argument(help="LFNs.", show_default=False, metavar="LFN")]


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
    )


def _count_bar(shown: bool) -> Progress:
    """Files done out of files asked (several LFNs); hidden for a single file."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
        disable=not shown,
    )


def parse_meta(values: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that reads as JSON (numbers, quoted strings) is taken as such."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--meta")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        out[key.strip()] = value
    return out


@contextlib.contextmanager
def _each(lfns: list[str], verb: str) -> Iterator[list[str]]:
    """Collect the LFNs that failed (their error printed); exit 1 at the end if any did."""
    failed: list[str] = []
    yield failed
    if failed:
        print_error(f"{len(failed)} of {len(lfns)} files could not be {verb}")
        raise typer.Exit(1)


def register(dm_app: typer.Typer) -> None:
    """Add the transfer commands to ``ctaprod dm``."""
    dm_app.command("put")(put)
    dm_app.command("get")(get)
    dm_app.command("rm")(rm)
    dm_app.command("replicate")(replicate)
    dm_app.command("check")(check)


def put(
    ctx: typer.Context,
    local: Annotated[
        Path, typer.Argument(help="Local file.", exists=True, dir_okay=False, show_default=False)
    ],
    lfn: Annotated[str, typer.Argument(help="LFN to register it as.", show_default=False)],
    se: Annotated[str | None, typer.Option("--se", help="Target SE (default: server's).")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", "-m", help="Metadata key=value (repeat).")
    ] = None,
    parent: Annotated[
        list[str] | None, typer.Option("--parent", help="Ancestor LFN (repeat).")
    ] = None,
) -> None:
    """Upload a local file to an SE and register it (size and ADLER32 checked)."""
    metadata = parse_meta(meta or [])
    with client(ctx) as cli, _bar() as bar:
        task = bar.add_task(f"put {local.name}", total=local.stat().st_size)
        stored = cli.data_put(
            local,
            lfn,
            se=se,
            metadata=metadata,
            parents=parent or [],
            progress=lambda n: bar.advance(task, n),
        )
    say(f"Stored {stored.lfn} on {stored.se} ({stored.size} bytes, ADLER32 {stored.checksum})")


def get(
    ctx: typer.Context,
    lfn: Annotated[str, typer.Argument(help="LFN to download.", show_default=False)],
    dest: Annotated[
        Path | None, typer.Argument(help="Local file or directory (default: current directory).")
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Prefer replicas at this site.")
    ] = None,
) -> None:
    """Download a file from its best replica (ADLER32 checked)."""
    name = split(check_lfn(lfn))[1]
    target = dest or Path(name)
    if target.is_dir():
        target = target / name
    with client(ctx) as cli, _bar() as bar:
        task = bar.add_task(f"get {name}", total=None)
        se = cli.data_get(
            lfn,
            target,
            site=site,
            progress=lambda n: bar.advance(task, n),
            total=lambda n: bar.update(task, total=n),
        )
    say(f"Downloaded {lfn} from {se} to {target}")


def rm(
    ctx: typer.Context,
    lfns: LfnsArg,
    se: Annotated[
        str | None, typer.Option("--se", help="Only remove the replica on this SE.")
    ] = None,
) -> None:
    """Remove files: every replica, then the catalog entry (--se: one replica only)."""
    with client(ctx) as cli, _each(lfns, "removed") as failed:
        for lfn in lfns:
            try:
                result = cli.data_remove_replica(lfn, se) if se else cli.data_remove_file(lfn)
            except (ApiError, CtaprodError) as exc:
                print_error(f"{lfn}: {exc}")
                failed.append(lfn)
                continue
            where = ", ".join(result.removed) or "no replica"
            say(f"Removed {lfn} from {where}" if se else f"Removed {lfn} ({where})")


def replicate(
    ctx: typer.Context,
    lfns: LfnsArg,
    se: Annotated[str, typer.Option("--se", help="Target SE.", show_default=False)],
    source: Annotated[
        str | None, typer.Option("--source", help="Source SE (default: best replica).")
    ] = None,
) -> None:
    """Copy files to another SE (checked) and register the new replicas."""
    bar = _count_bar(len(lfns) > 1)
    with client(ctx) as cli, _each(lfns, "replicated") as failed, bar:
        task = bar.add_task(f"to {se}", total=len(lfns))
        for lfn in lfns:
            try:
                stored = cli.data_replicate(lfn, se, source)
            except (ApiError, CtaprodError) as exc:
                print_error(f"{lfn}: {exc}")
                failed.append(lfn)
                continue
            finally:
                bar.advance(task)
            say(f"{'Replicated' if stored.copied else 'Already on'} {se}: {lfn}")


def check(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Catalog directory (recursive).", show_default=False)],
    se: Annotated[str, typer.Option("--se", help="Storage element.", show_default=False)],
    checksums: Annotated[
        bool, typer.Option("--checksums", help="Also compare ADLER32 (reads every file).")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", min=0, max=MAX_LIMIT, help="LFNs listed per kind of problem."),
    ] = DEFAULT_LIMIT,
    remove_stale_uploads: Annotated[
        bool,
        typer.Option(
            "--remove-stale-uploads",
            help="Remove temporary upload files older than --min-age (Operator, Admin).",
        ),
    ] = False,
    min_age: Annotated[
        int, typer.Option("--min-age", min=0, help="Seconds; see --remove-stale-uploads.")
    ] = DEFAULT_STALE_AGE,
    force: Annotated[
        bool,
        typer.Option("--force", help="Remove stale uploads even if the SE cannot tell their age."),
    ] = False,
) -> None:
    """Compare the catalog's replicas on an SE under PATH with the files the SE holds there:
    missing files, orphans, stale temporary uploads, wrong sizes (and checksums). Exit code 1
    when anything is inconsistent."""
    with client(ctx) as cli, stderr().status(f"Checking {path} on {se}..."):
        report = cli.data_check(
            path,
            se,
            checksums=checksums,
            limit=limit,
            remove_stale_uploads=remove_stale_uploads,
            min_age=min_age,
            force=force,
        )
    kinds = [k for k in KINDS if k != "checksum_mismatch" or checksums]
    summary = table("Kind", "Files", title=f"{report.path} on {report.se}")
    summary.add_row("files on storage", str(report.storage_files))
    summary.add_row("replica entries", str(report.catalog_replicas))
    for kind in kinds:
        summary.add_row(kind, str(report.issues(kind).count))
    if remove_stale_uploads:
        summary.add_row("removed_stale_uploads", str(report.removed_stale_uploads.count))
        summary.add_row("kept_stale_uploads", str(report.kept_stale_uploads))
    stdout().print(summary)
    for kind in [*kinds, "removed_stale_uploads"]:
        issues = report.issues(kind)
        if not issues.lfns:
            continue
        more = issues.count - len(issues.lfns)
        say(f"{kind} ({issues.count}{f', first {len(issues.lfns)} shown' if more else ''}):")
        for lfn in issues.lfns:
            say(f"  {lfn}")
    if report.truncated:
        print_error(f"{report.path} on {report.se}: check incomplete, {report.truncated}")
        raise typer.Exit(1)
    if not report.consistent:
        print_error(f"{report.path} on {report.se} is not consistent with the catalog")
        raise typer.Exit(1)
    say(f"{report.path} on {report.se}: consistent")
