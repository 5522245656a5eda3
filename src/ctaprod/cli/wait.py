"""Follow jobs until they reach a final state (``job status --wait``, ``job submit --wait``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ctaprod.cli.output import (
    chunks,
    compact_ids,
    count_by_status,
    plural,
    print_error,
    print_warning,
    stderr,
)
from ctaprod.client.http import Client
from ctaprod.core.errors import NotFound
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.jobs import JobSummary
from ctaprod.core.schemas import MAX_PAGE, JobFilter

EXIT_ALL_DONE = 0
EXIT_TIMEOUT = 1
EXIT_NOT_ALL_DONE = 4
FIRST_POLL = 1.0


@dataclass
class WaitResult:
    exit_code: int
    jobs: dict[int, JobSummary]
    timed_out: bool = False

    def summary(self) -> str:
        """``3 jobs: 2 Done, 1 Failed``."""
        counts = count_by_status(j.status for j in self.jobs.values())
        return f"{plural(len(self.jobs), 'job')}: {counts}"

    def report_timeout(self, timeout: float | None) -> None:
        pending = sum(1 for j in self.jobs.values() if j.status not in FINAL_STATES)
        print_error(f"timed out after {timeout:g}s with {plural(pending, 'job')} not final")


def fetch_jobs(cli: Client, ids: Sequence[int]) -> dict[int, JobSummary]:
    """The visible jobs among ``ids``, asked by chunks of one page each."""
    found: dict[int, JobSummary] = {}
    for chunk in chunks(ids, MAX_PAGE):
        for job in cli.iter_jobs(JobFilter(job_ids=chunk), page=MAX_PAGE):
            found[job.job_id] = job
    return found


def existing_jobs(cli: Client, ids: Sequence[int]) -> dict[int, JobSummary]:
    """Like :func:`fetch_jobs`, warning about unknown IDs; fails if none is known."""
    found = fetch_jobs(cli, ids)
    missing = [i for i in ids if i not in found]
    if missing and not found:
        raise NotFound(f"no job {compact_ids(missing)} (or not visible to you)")
    if missing:
        print_warning(f"no job {compact_ids(missing)} (or not visible to you)")
    return {i: found[i] for i in ids if i in found}


def wait_for_jobs(
    cli: Client, ids: Sequence[int], *, timeout: float | None, interval: float
) -> WaitResult:
    """Poll until every job is final or ``timeout`` passes, with a progress bar on stderr.

    Exit code: 0 if all jobs are Done, 4 if some ended otherwise (Failed, Killed,
    Deleted), 1 on timeout. Completed is not final: the job still has to upload outputs.
    """
    jobs = existing_jobs(cli, ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = FIRST_POLL
    timed_out = False
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]final[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=stderr()) as progress:
        task = progress.add_task("", total=len(jobs))
        while True:
            final = sum(1 for job in jobs.values() if job.status in FINAL_STATES)
            progress.update(
                task, completed=final, description=count_by_status(j.status for j in jobs.values())
            )
            if final == len(jobs):
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - now)))
            pause = min(interval, pause * 2)
            # Only the jobs still running are asked again: the load drops as jobs end.
            pending = [i for i, job in jobs.items() if job.status not in FINAL_STATES]
            latest = fetch_jobs(cli, pending)
            for i in pending:
                # A job that vanished was deleted (and purged) meanwhile.
                jobs[i] = latest.get(i) or jobs[i].model_copy(update={"status": JobStatus.DELETED})
    if timed_out:
        return WaitResult(EXIT_TIMEOUT, jobs, timed_out=True)
    if all(j.status == JobStatus.DONE for j in jobs.values()):
        return WaitResult(EXIT_ALL_DONE, jobs)
    return WaitResult(EXIT_NOT_ALL_DONE, jobs)
