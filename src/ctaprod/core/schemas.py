"""Request and response bodies of the REST API, shared by the server and the client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, Field, field_validator

from ctaprod.core.job_states import JobStatus
from ctaprod.core.jobs import JobDescription, JobSummary
from ctaprod.core.matching import Resource

MAX_PAGE = 1000
MAX_BATCH = 10_000
INT64_MAX = 2**63 - 1

# Integers a client sends: in range of every database's 64-bit integers (422, never a
# driver's overflow). JSON bodies are checked centrally too (api/limits.py).
Id = Annotated[int, Ge(0), Le(INT64_MAX)]
Int64 = Annotated[int, Ge(-INT64_MAX - 1), Le(INT64_MAX)]


class SubmitRequest(BaseModel):
    """Either a description text (JDL, YAML or JSON) or already-parsed documents."""

    text: str | None = Field(None, max_length=16 * 1024 * 1024)
    format: Literal["auto", "jdl", "yaml", "json"] = "auto"
    documents: list[dict[str, Any]] | None = Field(None, max_length=MAX_BATCH)


class SubmitResponse(BaseModel):
    job_ids: list[int]


class JobIds(BaseModel):
    job_ids: list[Id] = Field(min_length=1, max_length=MAX_BATCH)


class RescheduleResponse(BaseModel):
    statuses: dict[int, JobStatus]


class JobFilter(BaseModel):
    status: list[JobStatus] = Field(default_factory=list)
    owner: str | None = None
    owner_group: str | None = None
    site: str | None = None
    job_group: str | None = None
    job_type: str | None = None
    job_name: str | None = None
    submitted_after: datetime | None = None
    submitted_before: datetime | None = None
    updated_after: datetime | None = None
    job_ids: list[Id] = Field(default_factory=list, max_length=MAX_PAGE)

    @field_validator("submitted_after", "submitted_before", "updated_after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # The server keeps UTC; a time without a zone is read as UTC, not refused later.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: int | None = None


class HeartbeatItem(BaseModel):
    job_id: int
    cpu_seconds: float = Field(0.0, ge=0, allow_inf_nan=False)
    wall_seconds: float = Field(0.0, ge=0, allow_inf_nan=False)
    rss_bytes: int = Field(0, ge=0)
    peak_rss_bytes: int = Field(0, ge=0)


class StatusReport(BaseModel):
    job_id: int
    status: JobStatus | None = None
    minor_status: str = Field("", max_length=128)
    application_status: str | None = Field(None, max_length=255)
    exit_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    cpu_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    wall_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    peak_rss_bytes: int | None = Field(None, ge=0)
    parameters: dict[str, str] = Field(default_factory=dict, max_length=100)


class ItemResult(BaseModel):
    job_id: int
    commands: list[str] = Field(default_factory=list)
    error: str | None = None
    status: int = 200


class PilotRegistration(BaseModel):
    stamp: str = Field(min_length=1, max_length=64)
    site: str = Field(min_length=1, max_length=128)
    ce: str = Field("", max_length=255)
    queue: str = Field("", max_length=255)


class PilotRegistered(BaseModel):
    pilot_id: int
    session_token: str


class MatchResponse(BaseModel):
    job_id: int
    owner: str
    owner_group: str
    description: JobDescription
    job_token: str
    attempt: int
    heartbeat_interval: float
    input_sandboxes: list[str] = Field(default_factory=list)
    sandbox_max_bytes: int | None = None  # the server's sandbox size limit


class PilotFinished(BaseModel):
    ok: bool
    reason: str = Field("", max_length=255)
    log: str | None = Field(None, max_length=8 * 1024 * 1024)
    jobs_done: int = Field(0, ge=0)


class PilotLog(BaseModel):
    log: str = Field(max_length=8 * 1024 * 1024)


class PilotInfo(BaseModel):
    pilot_id: int
    stamp: str
    ce_ref: str
    ce: str
    queue: str
    site: str
    status: str
    status_reason: str
    submission_time: datetime
    last_update: datetime
    jobs_done: int


class WhoAmI(BaseModel):
    user: str
    group: str
    kind: str
    properties: list[str]


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    groups: list[str] = Field(default_factory=list, max_length=100)
    email: str = Field("", max_length=255)


class UserInfo(BaseModel):
    name: str
    email: str
    enabled: bool
    groups: list[str]


class GroupCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    properties: list[str] = Field(default_factory=list, max_length=100)
    share: float = Field(1.0, ge=0, le=1e9, allow_inf_nan=False)
    description: str = Field("", max_length=255)


class GroupUpdate(BaseModel):
    properties: list[str] | None = Field(None, max_length=100)
    share: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    description: str | None = Field(None, max_length=255)


class GroupInfo(BaseModel):
    name: str
    properties: list[str]
    share: float
    description: str


class MembershipChange(BaseModel):
    user: str = Field(max_length=64)
    group: str = Field(max_length=64)


class TokenRequest(BaseModel):
    user: str = Field(max_length=64)
    group: str = Field(max_length=64)
    kind: Literal["user", "pilot"] = "user"
    days: float | None = Field(None, gt=0, le=3650)
    description: str = Field("", max_length=255)


class TokenIssued(BaseModel):
    token: str
    jti: str
    user: str
    group: str
    kind: str
    expires_at: datetime


class TokenInfo(BaseModel):
    jti: str
    user: str
    group: str
    kind: str
    description: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class SiteStatus(BaseModel):
    name: str
    status: Literal["Active", "Banned"]
    reason: str = ""
    updated_by: str = ""
    updated_at: datetime | None = None


class SiteChange(BaseModel):
    status: Literal["Active", "Banned"]
    reason: str = Field("", max_length=255)


class MatchRequest(BaseModel):
    resource: Resource


class ErrorBody(BaseModel):
    error: str
    message: str
    detail: dict[str, Any] = Field(default_factory=dict)
