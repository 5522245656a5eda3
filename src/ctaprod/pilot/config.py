"""Pilot configuration: ``CTAPROD_PILOT_*`` environment variables, overridden by arguments.

The pilot factory (or a site's batch job script) sets the environment; ``python -m
ctaprod.pilot --help`` lists the command-line equivalents. Lists (``TAGS``) are written
``a,b,c`` or as a JSON array.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ctaprod.core.matching import Resource


def _new_stamp() -> str:
    return uuid.uuid4().hex


class PilotConfig(BaseSettings):
    """Everything a pilot needs to know about its server and its worker node."""

    model_config = SettingsConfigDict(env_prefix="CTAPROD_PILOT_", extra="ignore")

    # the server
    url: str = Field("http://127.0.0.1:8722", description="Server URL")
    token: str = Field("", repr=False, description="Pilot token (kind 'pilot')")
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
    # retries when the server is unreachable
    max_retry_seconds: float = Field(600.0, ge=0, description="Retry window per server call")
    retry_initial: float = Field(1.0, gt=0, description="First retry delay (doubling)")
    retry_max_delay: float = Field(60.0, gt=0, description="Cap of the retry delay")
    startup_retry_seconds: float = Field(300.0, ge=0, description="Retry window to register")
    log_tail_bytes: int = Field(1024 * 1024, ge=0, description="Pilot log sent at the end")

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [t.strip() for t in text.split(",") if t.strip()]
        return value

    @field_validator("url")
    @classmethod
    def _strip_url(cls, value: str) -> str:
        return value.rstrip("/")

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
