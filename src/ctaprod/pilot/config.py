"""Pilot configuration: ``CTAPROD_PILOT_*`` environment variables, overridden by arguments.

The pilot factory (or a site's batch job script) sets the environment; ``python -m
ctaprod.pilot --help`` lists the command-line equivalents. Lists (``TAGS``) are written
``a,b,c`` or as a JSON array.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.core.matching import Resource
from ctaprod.pilot.capped_output import DEFAULT_MAX_BYTES
from ctaprod.pilot.sandbox import Sandbox

logger = logging.getLogger("ctaprod.pilot.retry")
T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRANSIENT = frozenset({502, 503, 504})  # worth retrying like a refused connection


def _new_stamp() -> str:
    return uuid.uuid4().hex


@contextmanager
def capture_log(path: Path, name: str = "ctaprod.pilot") -> Iterator[Path]:
    """Copy the records of logger ``name`` (INFO and above) to ``path`` while active."""
    log = logging.getLogger(name)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    old_level = log.level
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield path
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(old_level)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff (``initial``, doubling, capped at ``max_delay``) for ``max_seconds``."""

    max_seconds: float = 600.0
    initial: float = 1.0
    max_delay: float = 60.0

    def call(self, fn: Callable[[], T], what: str, stop: threading.Event | None = None) -> T:
        """``fn()``, retried while the server is unreachable (or 502/503/504); re-raises
        the last error when the window is over, or as soon as ``stop`` is set."""
        deadline, delay = time.monotonic() + self.max_seconds, self.initial
        while True:
            try:
                return fn()
            except (ServerUnreachable, ApiError) as exc:
                left = deadline - time.monotonic()
                if (isinstance(exc, ApiError) and exc.status not in TRANSIENT) or left <= 0:
                    raise
                logger.warning("%s: %s; retrying in %.1f s", what, exc, min(delay, left))
                if stop is None:
                    time.sleep(min(delay, left))
                elif stop.wait(min(delay, left)):
                    raise
                delay = min(delay * 2, self.max_delay)


@dataclass(frozen=True)
class WrapperOptions:
    """How the job wrapper runs payloads (see :meth:`PilotConfig.wrapper_options`)."""

    heartbeat_interval: float | None = None  # None: the interval of the match reply
    wall_factor: float = 2.0  # wall-clock limit = CPUTime * factor + margin
    wall_margin: float = 300.0
    kill_grace: float = 5.0
    poll_interval: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    site: str = ""  # the pilot's site: input data is read there first
    output_max_bytes: int = DEFAULT_MAX_BYTES  # per stream (stdout, stderr): head + tail
    sandbox_max_bytes: int = 10 * 1024 * 1024  # when the server does not say its limit
    keep_failed_jobs: bool = False  # keep the directories of failed jobs (debugging)
    sandbox: Sandbox = field(default_factory=Sandbox)  # how payloads are isolated


class PilotConfig(BaseSettings):
    """Everything a pilot needs to know about its server and its worker node."""

    model_config = SettingsConfigDict(env_prefix="CTAPROD_PILOT_", extra="ignore")

    # the server
    url: str = Field("http://127.0.0.1:8722", description="Server URL")
    # Set by the entry point from a descriptor, a file or (scrubbed at once) the environment;
    # kept in this process's memory only (see ctaprod.pilot.__main__).
    token: str = Field("", repr=False, exclude=True, description="Pilot credential")
    request_timeout: float = Field(60.0, gt=0, description="Seconds per HTTP request")
    # identity and resource
    stamp: str = Field(default_factory=_new_stamp, min_length=1, max_length=64)
    site: str = Field("LOCAL.localhost.org", min_length=1, max_length=128)
    ce: str = Field("", max_length=255)
    queue: str = Field("", max_length=255)
    platform: str = Field("", max_length=128)
    tags: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cpu_time: int = Field(86400, ge=1, description="Seconds the pilot may live")
    memory_mb: int = Field(2048, ge=0)
    processors: int = Field(1, ge=1, le=1024)
    # behaviour
    max_empty_matches: int = Field(3, ge=1, description="Stop after N empty matches in a row")
    empty_match_sleep: float = Field(5.0, ge=0, description="Seconds between empty matches")
    min_time_left: int = Field(60, ge=0, description="Stop when less time than this is left")
    once_job: bool = Field(False, description="Run at most one job")
    work_dir: Path = Field(default_factory=Path.cwd)
    heartbeat_interval: float | None = Field(None, gt=0, description="Default: the server's")
    wall_factor: float = Field(2.0, gt=0, description="Wall limit = CPUTime * factor + margin")
    wall_margin: float = Field(300.0, ge=0)
    kill_grace: float = Field(5.0, ge=0, description="SIGTERM to SIGKILL of a payload")
    output_max_bytes: int = Field(
        DEFAULT_MAX_BYTES, ge=1024, description="stdout/stderr kept per stream (head + tail)"
    )
    sandbox_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Output sandbox limit if the server gives none"
    )
    keep_failed_jobs: bool = Field(
        False, description="Keep the directories of jobs that did not end well (debugging)"
    )
    # payload isolation (ctaprod.pilot.sandbox)
    sandbox: Literal["auto", "none", "bwrap", "apptainer"] = Field(
        "auto", description="auto: bwrap when it works here, else none (with a warning)"
    )
    apptainer_image: str = Field("", description="Image of the apptainer sandbox")
    sandbox_binds: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra read-only binds of the sandbox (src[:dest])"
    )
    # retries when the server is unreachable
    max_retry_seconds: float = Field(600.0, ge=0, description="Retry window per server call")
    retry_initial: float = Field(1.0, gt=0, description="First retry delay (doubling)")
    retry_max_delay: float = Field(60.0, gt=0, description="Cap of the retry delay")
    startup_retry_seconds: float = Field(300.0, ge=0, description="Retry window to register")
    log_tail_bytes: int = Field(1024 * 1024, ge=0, description="Pilot log sent at the end")

    @field_validator("tags", "sandbox_binds", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [t.strip() for t in text.split(",") if t.strip()]
        return value

    @field_validator("work_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.absolute()

    @field_validator("url")
    @classmethod
    def _strip_url(cls, value: str) -> str:
        return value.rstrip("/")

    def retry_policy(self, max_seconds: float | None = None) -> RetryPolicy:
        """The backoff for server calls (window ``max_retry_seconds`` unless given)."""
        window = self.max_retry_seconds if max_seconds is None else max_seconds
        return RetryPolicy(window, self.retry_initial, self.retry_max_delay)

    def wrapper_options(self, sandbox: Sandbox | None = None) -> WrapperOptions:
        """The options of the job wrapper (payloads run in ``sandbox``, default none)."""
        return WrapperOptions(
            self.heartbeat_interval,
            self.wall_factor,
            self.wall_margin,
            self.kill_grace,
            retry=self.retry_policy(),
            site=self.site,
            output_max_bytes=self.output_max_bytes,
            sandbox_max_bytes=self.sandbox_max_bytes,
            keep_failed_jobs=self.keep_failed_jobs,
            sandbox=sandbox or Sandbox(),
        )

    def resource(self, cpu_time_left: int) -> Resource:
        """What this pilot offers to the matcher with ``cpu_time_left`` seconds to go."""
        return Resource(
            site=self.site,
            ce=self.ce,
            queue=self.queue,
            platform=self.platform,
            tags=list(self.tags),
            cpu_time_left=max(0, cpu_time_left),
            memory_mb=self.memory_mb,
            processors=self.processors,
        )
