"""The job wrapper: run one matched job from input sandbox to final status.

Steps: report Running; download and unpack the input sandboxes and the input data; run the
payload under the watchdog with heartbeats (a Kill command, or the server disowning the job,
kills it); store and register the output data (:mod:`ctaprod.pilot.data`); pack and upload
the output sandbox; report the final status (Completed when a request must finish the
outputs, which is then created). Calls that fail because the server is unreachable are
retried with exponential backoff; the final report (and that request) is kept in
``<job dir>/final_status.json`` until delivered (:mod:`ctaprod.pilot.final_status`; the
pilot retries leftovers at its end). The output sandbox: :mod:`ctaprod.pilot.output_sandbox`.
When the server says the job is no longer ours (403/404/409) the wrapper leaves it alone.

The payload runs in the pilot's sandbox (:mod:`ctaprod.pilot.sandbox`) with an environment
that holds no credential; it gets its own job token only when the job asks for it
(``PayloadToken = True``): a file readable by its owner only, named by
``CTAPROD_TOKEN_FILE`` and removed once the payload ends. A job the wrapper cannot run
(an unusable command line, an unexpected error anywhere) ends Failed at once with the
reason as its minor status; the pilot goes on.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.http import Client
from ctaprod.core.archive import safe_extract
from ctaprod.core.errors import CtaprodError
from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import LFN_PREFIX
from ctaprod.core.requests import RequestSpec
from ctaprod.core.schemas import HeartbeatItem, MatchResponse, StatusReport
from ctaprod.pilot.capped_output import printable_status
from ctaprod.pilot.cleanup import JOB_DIR_PREFIX, clean_job_dir
from ctaprod.pilot.config import WrapperOptions, capture_log
from ctaprod.pilot.data import (
    DataFailure,
    StorageElements,
    TransferAbandoned,
    default_output_dir,
    download_inputs,
    handle_outputs,
)
from ctaprod.pilot.final_status import (
    FINAL_FILE,
    GONE,
    JobGone,
    deliver_final,
    keep_final,
    send_report,
)
from ctaprod.pilot.keepalive import KeepAlive
from ctaprod.pilot.output_sandbox import JOB_LOG, select_outputs, upload_outputs
from ctaprod.pilot.watchdog import Limits, Outcome, PayloadResult, Usage, last_line, run_payload

__all__ = [
    "FINAL_FILE",
    "PENDING_REQUESTS",
    "ClientFactory",
    "JobGone",
    "JobOutcome",
    "build_argv",
    "deliver_final",
    "run_job",
    "select_outputs",
    "send_report",
]

logger = logging.getLogger("ctaprod.pilot.wrapper")
ClientFactory = Callable[[str], Client]
"""Builds a client for the server with the given bearer token."""

PENDING_REQUESTS = "Pending requests"
TOKEN_FILE = ".ctaprod_job_token"  # the payload's job token, when the job asks for it
J = JobStatus


@dataclass(frozen=True)
class JobOutcome:
    """What became of a job: ``status`` None means it was taken away before it finished."""

    job_id: int
    status: JobStatus | None
    minor_status: str
    exit_code: int | None = None
    delivered: bool = False  # the final status reached the server


def build_argv(executable: str, arguments: str, job_dir: Path) -> list[str]:
    """The command line: a relative executable found in the job dir runs as ``./name``."""
    local = job_dir / executable
    if (
        not os.path.isabs(executable)
        and local.is_file()
        and local.resolve().is_relative_to(job_dir.resolve())
    ):
        local.chmod(local.stat().st_mode | 0o111)
        executable = executable if executable.startswith("./") else f"./{executable}"
    return [executable, *shlex.split(arguments)]


def _verdict(result: PayloadResult, stopping: bool) -> tuple[JobStatus, str]:
    if result.outcome is Outcome.COMPLETED:
        code = result.exit_code
        if code == 0:
            return J.DONE, "Execution Complete"
        if code is None:
            return J.FAILED, "Application exit status unknown"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return J.FAILED, f"Application terminated by signal {name}"
        return J.FAILED, f"Application exited with code {code}"
    return J.FAILED, {
        Outcome.WALL_LIMIT: "Wall-clock limit exceeded",
        Outcome.CPU_LIMIT: "CPU time limit exceeded",
        Outcome.MEMORY_LIMIT: "Memory limit exceeded",
        Outcome.KILLED: "Killed (pilot stopping)" if stopping else "Killed",
        Outcome.START_FAILED: "Application could not be started",
    }[result.outcome]


class _Job:
    def __init__(
        self,
        client: Client,
        match: MatchResponse,
        job_dir: Path,
        opts: WrapperOptions,
        stop_event: threading.Event | None,
    ) -> None:
        self.client, self.match, self.dir, self.opts = client, match, job_dir, opts
        self.id, self.desc = match.job_id, match.description
        self.stop_event = stop_event
        self.gone: str | None = None  # why the server took the job away during the payload
        self.argv: list[str] = []
        self.request: RequestSpec | None = None  # to finish the outputs (job Completed)
        self.last_usage = Usage(0.0, 0.0, 0, 0)  # what keep-alive beats report
        self._storage: StorageElements | None = None

    def storage(self) -> StorageElements:
        """The SEs listed by the server (asked once per job)."""
        if self._storage is None:
            self._storage = StorageElements.fetch(self.client, self.opts.retry)
        return self._storage

    def note(self, minor: str, **parameters: str) -> None:
        """A best-effort minor status (no retry); JobGone if the server refuses it."""
        try:
            send_report(
                self.client,
                StatusReport(
                    job_id=self.id,
                    minor_status=printable_status(minor, 128),
                    parameters=parameters,
                ),
                None,
            )
        except (ServerUnreachable, ApiError) as exc:
            logger.warning("job %d: minor status %r not sent: %s", self.id, minor, exc)

    def run(self) -> JobOutcome:
        logger.info(
            "job %d (attempt %d): %s %s",
            self.id,
            self.match.attempt,
            self.desc.executable,
            self.desc.arguments,
        )
        send_report(
            self.client,
            StatusReport(job_id=self.id, status=J.RUNNING, minor_status="Job started"),
            self.opts.retry,
        )
        with self.keepalive():
            failure = self.prepare()
        if failure is not None:
            logger.error("job %d: %s", self.id, failure)
            return self.finish(J.FAILED, failure, None)
        result = self.execute()
        self.last_usage = result.usage
        if self.gone is not None:
            raise JobGone(f"job {self.id}: {self.gone}")
        status, minor = _verdict(result, self.stop_event is not None and self.stop_event.is_set())
        logger.info("job %d: payload %s (%s)", self.id, result.message, minor)
        with self.keepalive():
            if status is J.DONE and self.desc.output_data:
                status, minor = self.output_data()
            self.note("Uploading output sandbox")
            problem = self.upload()
        if problem is not None and status in (J.DONE, J.COMPLETED):
            status, minor = J.FAILED, problem
        return self.finish(status, minor, result)

    def prepare(self) -> str | None:
        """Input sandboxes, input data and the command line; the failure minor or None."""
        for sha in self.match.input_sandboxes:
            archive = self.dir / f".input_{sha[:16]}.tar.gz"
            try:
                got = self.opts.retry.call(
                    partial(self.client.download_sandbox, sha, archive),
                    f"job {self.id}: input sandbox {sha[:12]}",
                )
                if got != sha:
                    return "Input sandbox corrupted (checksum mismatch)"
                safe_extract(archive, self.dir)
            except ServerUnreachable:
                return "Input sandbox download failed (server unreachable)"
            except ApiError as exc:
                return f"Input sandbox download failed (HTTP {exc.status})"
            except CtaprodError as exc:  # unsafe members, too large unpacked, not an archive
                logger.error("job %d: %s", self.id, exc)
                return f"Input sandbox is invalid: {exc}"
            finally:
                archive.unlink(missing_ok=True)
        lfn_sandbox = [s[4:] for s in self.desc.input_sandbox if s.upper().startswith(LFN_PREFIX)]
        inputs = [*self.desc.input_data, *lfn_sandbox]
        if inputs:
            self.note("Downloading input data")
            try:
                download_inputs(
                    self.client, self.storage(), inputs, self.dir, self.opts.site, self.opts.retry
                )
            except DataFailure as exc:
                return str(exc)
            except (ServerUnreachable, ApiError) as exc:
                return f"Input data: storage element list unavailable ({exc})"
        problem = _unusable_command(self.desc.executable, self.desc.command_arguments())
        problem = problem or _unusable_environment(self.desc.payload_environment())
        if problem is not None:
            return problem
        try:
            # JobConfigArgs goes after the arguments as `--cfg ...`, as DIRAC's Job API puts it.
            self.argv = build_argv(self.desc.executable, self.desc.command_arguments(), self.dir)
        except ValueError as exc:
            return f"Invalid Arguments: {exc}"
        return None

    def execute(self) -> PayloadResult:
        env = {
            k: v
            for k, v in os.environ.items()  # no pilot or user credentials
            if not k.startswith(("CTAPROD_PILOT_", "CTAPROD_TOKEN"))
        }
        env.update(self.desc.payload_environment())  # Environment and ExecutionEnvironment
        env.update(CTAPROD_JOB_ID=str(self.id), CTAPROD_JOB_DIR=str(self.dir))
        for key in [k for k in env if k.startswith(("CTAPROD_PILOT_", "CTAPROD_TOKEN"))]:
            del env[key]  # not even from the job's own Environment
        desc = self.desc
        limits = Limits(
            wall_seconds=desc.cpu_time * self.opts.wall_factor + self.opts.wall_margin,
            cpu_seconds=desc.cpu_limit_seconds(),
            memory_bytes=desc.max_ram_mb * 1024 * 1024 if desc.max_ram_mb else None,
        )
        for name in (desc.std_output, desc.std_error):
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
        token_file = self.dir / TOKEN_FILE
        if desc.payload_token:
            _write_owner_only(token_file, self.match.job_token + "\n")
            env.update(CTAPROD_TOKEN_FILE=str(token_file), CTAPROD_URL=self.client.url)
        argv, env = self.opts.sandbox.wrap(self.argv, self.dir, env)
        self.note("Application")
        try:
            return run_payload(
                argv,
                cwd=self.dir,
                env=env,
                stdout_path=self.dir / desc.std_output,
                stderr_path=self.dir / desc.std_error,
                limits=limits,
                heartbeat=self.heartbeat,
                heartbeat_interval=self.opts.heartbeat_interval or self.match.heartbeat_interval,
                poll_interval=self.opts.poll_interval,
                stop_event=self.stop_event,
                kill_grace=self.opts.kill_grace,
                output_max_bytes=self.opts.output_max_bytes,
            )
        finally:
            token_file.unlink(missing_ok=True)

    def keepalive(self) -> KeepAlive:
        """Heartbeats while sandboxes and data move (the watchdog sends them for the payload)."""
        return KeepAlive(
            self.heartbeat,
            self.opts.heartbeat_interval or self.match.heartbeat_interval,
            lambda: self.last_usage,
        )

    def heartbeat(self, usage: Usage) -> bool:
        """Send a heartbeat; True (kill the payload) on a Kill command or a lost job."""
        if usage.wall_seconds or usage.cpu_seconds or usage.peak_rss_bytes:
            self.last_usage = usage
        item = HeartbeatItem(
            job_id=self.id,
            cpu_seconds=usage.cpu_seconds,
            wall_seconds=usage.wall_seconds,
            rss_bytes=usage.rss_bytes,
            peak_rss_bytes=usage.peak_rss_bytes,
        )
        try:
            reply = self.client.heartbeat(item)
        except ServerUnreachable as exc:
            logger.warning("job %d: heartbeat not sent: %s", self.id, exc)
            return False
        except ApiError as exc:
            if exc.status in GONE:
                self.gone = f"heartbeat refused: {exc.message}"
                return True
            logger.warning("job %d: heartbeat failed: %s", self.id, exc)
            return False
        if "Kill" in reply.commands:
            self.gone = "killed by the server (Kill command)"
            return True
        return False

    def output_data(self) -> tuple[JobStatus, str]:
        """Store and register the OutputData: the job's status and minor status after it.

        JobGone when the server takes the job away first (a keep-alive reply): the uploads
        are then abandoned and removed, nothing is registered."""
        self.note("Uploading output data")
        try:
            result = handle_outputs(
                self.client,
                self.storage,
                self.id,
                self.desc,
                self.dir,
                default_output_dir(self.match.owner, self.id),
                self.opts.site,
                self.opts.retry,
                attempt=self.match.attempt,
                stop=lambda: self.gone is not None,
            )
        except TransferAbandoned as exc:
            raise JobGone(f"job {self.id}: {self.gone or exc}") from exc
        except DataFailure as exc:
            logger.error("job %d: %s", self.id, exc)
            return J.FAILED, str(exc)
        except CtaprodError as exc:  # e.g. an OutputPath or OutputSE the catalog refuses
            logger.error("job %d: output data: %s", self.id, exc)
            return J.FAILED, f"Output data: {exc}"
        if result.request is not None:
            self.request = result.request
            return J.COMPLETED, PENDING_REQUESTS
        return J.DONE, "Execution Complete"

    def upload(self) -> str | None:
        """Pack stdout, stderr and the declared outputs that exist; upload them with the
        job's token. Returns a failure minor status, or None."""
        desc = self.desc
        found, missing, refused = select_outputs(
            [desc.std_output, desc.std_error, *desc.output_sandbox], self.dir
        )
        if missing or refused:
            text = "; ".join(
                f"{what} {', '.join(names)}"
                for what, names in (("missing", missing), ("refused", refused))
                if names
            )
            logger.warning("job %d: output sandbox: %s", self.id, text)
            self.note(f"Output sandbox: {text}", OutputSandboxProblems=text[:255])
        return upload_outputs(
            self.client,
            self.id,
            self.dir,
            found,
            self.opts.retry,
            max_bytes=self.match.sandbox_max_bytes or self.opts.sandbox_max_bytes,
            streams=[desc.std_output, desc.std_error],
        )

    def finish(self, status: JobStatus, minor: str, result: PayloadResult | None) -> JobOutcome:
        """Keep the final report on disk, deliver it, and say what happened."""
        stdout = printable_status(last_line(self.dir / self.desc.std_output))
        application = stdout or (result.message if result and status is J.FAILED else "")
        minor = printable_status(minor, 128)  # no control character reaches the database
        report = StatusReport(
            job_id=self.id,
            status=status,
            minor_status=minor,
            application_status=application[:255],
            exit_code=result.exit_code if result else None,
            cpu_seconds=result.usage.cpu_seconds if result else None,
            wall_seconds=result.usage.wall_seconds if result else None,
            peak_rss_bytes=result.usage.peak_rss_bytes if result else None,
        )
        request = self.request if status is J.COMPLETED else None
        path = keep_final(self.dir, self.match.job_token, report, request)
        delivered = deliver_final(self.client, path, self.opts.retry)
        return JobOutcome(self.id, status, minor, report.exit_code, delivered)


def wrapper_error(exc: BaseException) -> str:
    """The minor status of a job the wrapper failed on: the error in one printable line."""
    return printable_status(f"Wrapper error: {type(exc).__name__}: {exc}", 128)


def fail_job(client: Client, job_id: int, minor: str, opts: WrapperOptions) -> JobOutcome:
    """Report the job Failed with ``minor`` (retried while the server is unreachable);
    nothing is kept on disk: the job's directory may be what failed."""
    minor = printable_status(minor, 128)
    report = StatusReport(job_id=job_id, status=J.FAILED, minor_status=minor)
    try:
        send_report(client, report, opts.retry)
    except JobGone as exc:
        logger.warning("%s; leaving it", exc)
        return JobOutcome(job_id, None, str(exc))
    except (ServerUnreachable, ApiError) as exc:
        logger.error("job %d: Failed not reported: %s", job_id, exc)
        return JobOutcome(job_id, J.FAILED, minor)
    return JobOutcome(job_id, J.FAILED, minor, delivered=True)


def _unusable_command(executable: str, arguments: str) -> str | None:
    """Why the command line cannot be run (NUL bytes, which no exec accepts), or None."""
    if "\x00" in executable:
        return "Invalid Executable: it contains a NUL byte"
    if "\x00" in arguments:
        return "Invalid Arguments: they contain a NUL byte"
    return None


def _unusable_environment(env: dict[str, str]) -> str | None:
    for key, value in env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            return f"Invalid Environment: variable {printable_status(key, 40)!r} cannot be set"
    return None


def _write_owner_only(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def run_job(
    client_factory: ClientFactory,
    match: MatchResponse,
    work_root: Path,
    options: WrapperOptions | None = None,
    *,
    stop_event: threading.Event | None = None,
) -> JobOutcome:
    """Run the matched job in ``<work_root>/job_<id>`` with its job token; never raises
    (the outcome says what happened): a job the wrapper fails on is reported Failed with the
    error as its minor status. The job directory is removed afterwards
    (:func:`ctaprod.pilot.cleanup.clean_job_dir`)."""
    opts = options or WrapperOptions()
    job_dir = (work_root / f"{JOB_DIR_PREFIX}{match.job_id}").absolute()
    outcome = JobOutcome(match.job_id, None, "wrapper error")
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        with capture_log(job_dir / JOB_LOG), client_factory(match.job_token) as client:
            job = _Job(client, match, job_dir, opts, stop_event)
            try:
                outcome = job.run()
            except JobGone as exc:
                logger.warning("%s; leaving it", exc)
                outcome = JobOutcome(match.job_id, None, str(exc))
            except (ServerUnreachable, ApiError) as exc:
                logger.error("job %d abandoned: %s", match.job_id, exc)
                outcome = JobOutcome(match.job_id, None, f"server trouble: {exc}")
            except Exception as exc:  # a job the wrapper cannot run must not stay Running
                logger.exception("job %d: wrapper error", match.job_id)
                outcome = fail_job(client, match.job_id, wrapper_error(exc), opts)
    except Exception as exc:  # the job directory, its log or the client: same answer
        logger.exception("job %d: wrapper error", match.job_id)
        with client_factory(match.job_token) as client:
            outcome = fail_job(client, match.job_id, wrapper_error(exc), opts)
    finally:  # the payload is gone by now: its directory goes unless kept for debugging
        try:
            done = clean_job_dir(job_dir, outcome.status, opts.keep_failed_jobs)
        except OSError as exc:
            done = f"not cleaned ({exc})"
        logger.info("job %d: directory %s %s", match.job_id, job_dir, done)
    return outcome
