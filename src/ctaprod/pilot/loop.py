"""The pilot: register, ask for jobs while time remains, run each one, report its own end.

A pilot registers with the pilot token and then uses the session token bound to it. It asks
for a job while its remaining time is at least ``min_time_left``; an empty answer is retried
after ``empty_match_sleep`` seconds, up to ``max_empty_matches`` in a row. Jobs run one at a
time through :func:`ctaprod.pilot.wrapper.run_job`. SIGTERM (or SIGINT) stops it gracefully:
no more matching, the running payload is killed through the watchdog and reported. At the
end the pilot says why it stopped, with the tail of its own log, and cleans its work
directory (:mod:`ctaprod.pilot.cleanup`): job directories go, and so do its log and the
directory itself when the pilot created it and the server has the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import FrameType

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.http import Client
from ctaprod.core.schemas import MatchResponse
from ctaprod.pilot.cleanup import clean_work_dir, remove_if_empty
from ctaprod.pilot.config import PilotConfig, RetryPolicy, capture_log
from ctaprod.pilot.sandbox import Sandbox, SandboxError, make_sandbox
from ctaprod.pilot.watchdog import tail
from ctaprod.pilot.wrapper import (
    FINAL_FILE,
    ClientFactory,
    JobOutcome,
    deliver_final,
    fail_job,
    run_job,
    wrapper_error,
)

logger = logging.getLogger("ctaprod.pilot.loop")
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 2
MAX_WRAPPER_ERRORS = 3  # in a row: the worker node, not the jobs, is broken


def deliver_pending(factory: ClientFactory, work_root: Path, retry: RetryPolicy) -> int:
    """Retry the final reports left in ``work_root/job_*/``; returns how many arrived.
    A job directory left with nothing else than its report goes once it is delivered."""
    done = 0
    for path in sorted(work_root.glob(f"job_*/{FINAL_FILE}")):
        try:
            token = str(json.loads(path.read_text())["token"])
        except (OSError, ValueError, KeyError) as exc:
            logger.error("unreadable %s: %s", path, exc)
            continue
        with factory(token) as client:
            done += deliver_final(client, path, retry)
        if not path.exists():
            remove_if_empty(path.parent)
    return done


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, caught: list[str]) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into ``stop`` (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Pilot:
    def __init__(self, config: PilotConfig, stop: threading.Event, log_path: Path) -> None:
        self.cfg, self.stop, self.log_path = config, stop, log_path
        self.signals: list[str] = []
        self.jobs_done = 0
        self.log_delivered = False
        self.sandbox = Sandbox()

    def client(self, token: str) -> Client:
        return Client(self.cfg.url, token, timeout=self.cfg.request_timeout)

    def run(self) -> int:
        cfg = self.cfg
        logger.info(
            "pilot %s starting: site %s, CE %r, queue %r, %d s, server %s",
            cfg.stamp,
            cfg.site,
            cfg.ce,
            cfg.queue,
            cfg.cpu_time,
            cfg.url,
        )
        start = time.monotonic()
        try:
            self.sandbox = make_sandbox(
                cfg.sandbox,
                work_dir=cfg.work_dir,
                image=cfg.apptainer_image,
                binds=cfg.sandbox_binds,
            )
        except SandboxError as exc:  # asked for, not available: run no payload unprotected
            logger.error("%s; no job is run", exc)
            return EXIT_FAILED
        logger.info("payload sandbox: %s", self.sandbox.describe())
        try:
            with self.client(cfg.token) as client:
                register = partial(client.register_pilot, cfg.stamp, cfg.site, cfg.ce, cfg.queue)
                reg = cfg.retry_policy(cfg.startup_retry_seconds).call(
                    register, "register", self.stop
                )
        except ServerUnreachable as exc:
            logger.error("cannot register, giving up: %s", exc)
            return EXIT_UNREACHABLE
        except ApiError as exc:
            logger.error("registration refused: %s", exc)
            return EXIT_FAILED
        logger.info("registered as pilot %d", reg.pilot_id)
        with self.client(reg.session_token) as session:
            ok, reason = self.loop(session, reg.pilot_id, start)
            if deliver_pending(self.client, cfg.work_dir, cfg.retry_policy()):
                logger.info("delivered final statuses kept from earlier")
            if removed := clean_work_dir(cfg.work_dir, cfg.keep_failed_jobs):
                logger.info("job directories left over: %d removed", removed)
            logger.info(
                "pilot %d ends (%s): %s; %d job(s) run",
                reg.pilot_id,
                "ok" if ok else "failed",
                reason,
                self.jobs_done,
            )
            log = tail(self.log_path, cfg.log_tail_bytes, max_lines=1 << 30)
            finished = partial(
                session.pilot_finished, reg.pilot_id, ok, reason[:255], log, self.jobs_done
            )
            try:
                # A pilot told to stop reports once and goes: no minutes of retries.
                cfg.retry_policy().call(finished, "pilot finished", self.stop)
            except (ServerUnreachable, ApiError) as exc:
                logger.error("could not report the end of the pilot: %s", exc)
                return EXIT_FAILED
            self.log_delivered = True
        return EXIT_OK if ok else EXIT_FAILED

    def loop(self, client: Client, pilot_id: int, start: float) -> tuple[bool, str]:
        """Match and run jobs until a stop condition; returns (ok, reason)."""
        cfg, empty, errors = self.cfg, 0, 0
        while True:
            if self.stop.is_set():
                return True, f"stopped by {', '.join(self.signals) or 'request'}"
            left = int(cfg.cpu_time - (time.monotonic() - start))
            if left < cfg.min_time_left:
                return True, f"time left too short ({left} s)"
            try:
                match: MatchResponse | None = cfg.retry_policy().call(
                    partial(client.match, pilot_id, cfg.resource(left)), "match", self.stop
                )
            except ServerUnreachable as exc:
                if self.stop.is_set():
                    continue
                logger.error("server unreachable: %s", exc)
                return False, "server unreachable"
            except ApiError as exc:
                logger.error("match refused: %s", exc)
                return False, f"match refused: {exc.message}"
            if match is None:
                empty += 1
                if empty >= cfg.max_empty_matches:
                    return True, f"no more matching jobs after {empty} attempts"
                logger.info(
                    "no job (%d/%d); next try in %g s",
                    empty,
                    cfg.max_empty_matches,
                    cfg.empty_match_sleep,
                )
                self.stop.wait(cfg.empty_match_sleep)
                continue
            empty = 0
            logger.info("matched job %d (%s)", match.job_id, match.description.job_name or "-")
            options = cfg.wrapper_options(self.sandbox)
            try:
                outcome = run_job(self.client, match, cfg.work_dir, options, stop_event=self.stop)
            except Exception as exc:  # run_job catches everything; this is the last resort
                logger.exception("job wrapper error on job %d", match.job_id)
                outcome = self.fail(match, wrapper_error(exc))
            errors = errors + 1 if outcome.minor_status.startswith("Wrapper error") else 0
            if errors >= MAX_WRAPPER_ERRORS:  # a broken worker node must not eat more jobs
                return False, f"{errors} wrapper errors in a row, last: {outcome.minor_status}"
            self.jobs_done += 1
            logger.info(
                "job %d: %s, %s%s",
                outcome.job_id,
                outcome.status or "left",
                outcome.minor_status,
                "" if outcome.delivered else " (not delivered)",
            )
            if cfg.once_job:
                return True, "one job done (--once-job)"

    def fail(self, match: MatchResponse, minor: str) -> JobOutcome:
        try:
            with self.client(match.job_token) as client:
                return fail_job(client, match.job_id, minor, self.cfg.wrapper_options())
        except Exception:
            logger.exception("job %d: could not report Failed", match.job_id)
            return JobOutcome(match.job_id, None, minor)


def run_pilot(config: PilotConfig, stop_event: threading.Event | None = None) -> int:
    """Run a pilot to its end; returns the exit code (0 ok, 1 failed, 2 server unreachable).

    ``stop_event`` (set by SIGTERM/SIGINT when running in the main thread) stops it
    gracefully. The pilot's log is kept in ``<work_dir>/pilot-<stamp>.log``.
    """
    stop = stop_event or threading.Event()
    created = not config.work_dir.exists()
    config.work_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", config.stamp)
    pilot = _Pilot(config, stop, config.work_dir / f"pilot-{name}.log")
    with capture_log(pilot.log_path), _stop_on_signals(stop, pilot.signals):
        code = pilot.run()
    if created and pilot.log_delivered:  # the server has the log: leave nothing behind
        pilot.log_path.unlink(missing_ok=True)
        remove_if_empty(config.work_dir)
    return code
