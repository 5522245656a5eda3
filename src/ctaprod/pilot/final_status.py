"""The final status of a job: kept on disk until the server has it, then delivered.

The wrapper writes the final report (and the request that must finish the job's outputs,
if any) to ``<job dir>/final_status.json`` before sending anything, so that a report lost to
an unreachable server is retried later (the pilot retries leftovers at its end). Delivery
sends the report, then creates the request; what was sent is marked in the file, which is
removed once everything arrived or the server refused it for good.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from ctaprod.core.requests import RequestSpec
from ctaprod.core.schemas import StatusReport
from ctaprod.pilot.config import TRANSIENT, RetryPolicy

# The wrapper's logger: these lines are part of the job's story, as before they moved here.
logger = logging.getLogger("ctaprod.pilot.wrapper")

FINAL_FILE = "final_status.json"
GONE = frozenset({403, 404, 409})  # the job is not (or no longer) ours
J = JobStatus


class JobGone(Exception):
    """The server refused an update: the job was killed, rescheduled or is not ours."""


def send_report(client: Client, report: StatusReport, retry: RetryPolicy | None) -> None:
    """Send a status report (with retries if ``retry``); JobGone if the server refuses it.

    A 409 for a report whose status the job has already (an earlier attempt went through
    but its answer was lost) counts as delivered.
    """
    what = f"job {report.job_id}: report {report.status or report.minor_status!r}"
    try:
        if retry is None:
            client.report(report)
        else:
            retry.call(lambda: client.report(report), what)
    except ApiError as exc:
        if exc.status not in GONE:
            raise
        if exc.status == 409 and report.status is not None:
            try:
                if client.job(report.job_id).status is report.status:
                    return
            except (ApiError, ServerUnreachable):
                pass
        raise JobGone(f"job {report.job_id}: {exc.message}") from exc


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def deliver_final(client: Client, path: Path, retry: RetryPolicy) -> bool:
    """Send the final report kept in ``path``, then create the request kept with it (if
    any); remove the file unless the server was down (what was sent is marked as such)."""
    body = json.loads(path.read_text())
    report = StatusReport.model_validate(body["report"])
    if not body.get("reported"):
        try:
            send_report(client, report, retry)
        except JobGone as exc:
            logger.warning("final status refused, dropped: %s", exc)
            path.unlink(missing_ok=True)
            return False
        except (ServerUnreachable, ApiError) as exc:
            logger.error(
                "job %d: final status not delivered (%s); kept in %s", report.job_id, exc, path
            )
            return False
        logger.info("job %d: final status %s delivered", report.job_id, report.status)
        if "request" in body:
            body["reported"] = True
            _write_private(path, json.dumps(body))
    if "request" in body and not _deliver_request(client, body, path, retry):
        return False
    path.unlink(missing_ok=True)
    return True


def _deliver_request(client: Client, body: dict[str, Any], path: Path, retry: RetryPolicy) -> bool:
    """Create the job's pending request; a refused one fails the job (nothing would ever
    finish its outputs). False if the server could not be reached (the file is kept)."""
    spec = RequestSpec.model_validate(body["request"])
    job_id = int(body["report"]["job_id"])
    try:
        request_id = retry.call(lambda: client.create_request(spec), f"job {job_id}: request")
    except ServerUnreachable as exc:
        logger.error("job %d: request not created (%s); kept in %s", job_id, exc, path)
        return False
    except ApiError as exc:
        if exc.status in TRANSIENT or exc.status >= 500:
            logger.error("job %d: request not created (%s); kept in %s", job_id, exc, path)
            return False
        logger.error("job %d: request refused: %s", job_id, exc)
        failed = StatusReport(
            job_id=job_id, status=J.FAILED, minor_status=f"Request refused: {exc.message}"[:128]
        )
        try:
            send_report(client, failed, retry)
        except (JobGone, ServerUnreachable, ApiError) as err:
            logger.error("job %d: could not report the refused request: %s", job_id, err)
        return True
    logger.info("job %d: request %s created for its outputs", job_id, request_id)
    return True


def keep_final(
    job_dir: Path, token: str, report: StatusReport, request: RequestSpec | None
) -> Path:
    """Write the final report (and the request to create after it) to ``job_dir``, readable
    by the pilot's user only (it holds the job token); the path of the file."""
    path = job_dir / FINAL_FILE
    body: dict[str, Any] = {
        "token": token,
        "report": report.model_dump(mode="json", exclude_none=True),
    }
    if request is not None:
        body["request"] = request.model_dump(mode="json")
    _write_private(path, json.dumps(body))
    return path
