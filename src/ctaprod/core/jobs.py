"""The job description model and the job records exchanged over the API."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ctaprod.core.job_states import JobStatus

SANDBOX_REF = re.compile(r"^SB:[0-9a-f]{64}$")
LFN_PREFIX = "LFN:"


def check_relative_name(name: str, what: str) -> str:
    """A file name inside a job's working directory: no absolute path, no '..', no control chars."""
    if not name or name.strip() != name:
        raise ValueError(f"{what} {name!r}: empty or surrounded by blanks")
    if name.startswith("/") or name.startswith("~"):
        raise ValueError(f"{what} {name!r}: absolute paths are not allowed")
    if any(ord(c) < 32 for c in name):
        raise ValueError(f"{what} {name!r}: control characters are not allowed")
    parts = name.split("/")
    if ".." in parts:
        raise ValueError(f"{what} {name!r}: '..' would escape the job's working directory")
    return name


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        # DIRAC accepts "A,B" and "A" where a list is expected.
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [str(value)]
    return value


StrList = Annotated[list[str], Field(default_factory=list)]


class JobDescription(BaseModel):
    """One job as submitted (after parametric expansion). Field aliases are DIRAC's JDL keys."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=False)

    executable: str = Field(alias="Executable", min_length=1, max_length=4096)
    arguments: str = Field("", alias="Arguments", max_length=65536)
    job_name: str = Field("", alias="JobName", max_length=255)
    job_group: str = Field("", alias="JobGroup", max_length=255)
    job_type: str = Field("User", alias="JobType", min_length=1, max_length=64)
    priority: int = Field(1, alias="Priority", ge=0, le=10)
    cpu_time: int = Field(86400, alias="CPUTime", ge=1)
    sites: StrList = Field(alias="Site")
    banned_sites: StrList = Field(alias="BannedSites")
    platform: str = Field("", alias="Platform", max_length=128)
    tags: StrList = Field(alias="Tags")
    number_of_processors: int = Field(1, alias="NumberOfProcessors", ge=1, le=1024)
    max_ram_mb: int = Field(0, alias="MaxRAM", ge=0, le=4 * 1024 * 1024)
    input_sandbox: StrList = Field(alias="InputSandbox")
    output_sandbox: StrList = Field(alias="OutputSandbox")
    input_data: StrList = Field(alias="InputData")
    input_data_policy: str = Field("", alias="InputDataPolicy", max_length=64)
    output_data: StrList = Field(alias="OutputData")
    output_se: StrList = Field(alias="OutputSE")
    output_path: str = Field("", alias="OutputPath", max_length=1024)
    # Metadata set on every OutputData file when it is registered (JDL: a JSON string).
    output_metadata: dict[str, Any] = Field(default_factory=dict, alias="OutputMetadata")
    std_output: str = Field("std.out", alias="StdOutput", max_length=255)
    std_error: str = Field("std.err", alias="StdError", max_length=255)
    environment: dict[str, str] = Field(default_factory=dict, alias="Environment")

    @field_validator(
        "sites",
        "banned_sites",
        "tags",
        "input_sandbox",
        "output_sandbox",
        "input_data",
        "output_data",
        "output_se",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        if isinstance(value, (int, float)):
            return str(value)
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any) -> Any:
        # JDL writes Environment = {"A=1", "B=2"}
        if isinstance(value, list):
            env = {}
            for item in value:
                key, sep, val = str(item).partition("=")
                if not sep or not key:
                    raise ValueError(f"Environment entry {item!r} is not NAME=value")
                env[key] = val
            return env
        return value

    @field_validator("output_metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f"OutputMetadata is not a JSON object: {exc}") from None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("OutputMetadata must map metadata field names to values")
        return value

    @field_validator("output_path", mode="after")
    @classmethod
    def _output_path(cls, value: str) -> str:
        path = value[len(LFN_PREFIX) :] if value.upper().startswith(LFN_PREFIX) else value
        if path and not path.startswith("/"):
            raise ValueError(f"OutputPath {value!r}: an LFN directory is an absolute path")
        return path.rstrip("/") or ("/" if path else "")

    @field_validator("sites", mode="after")
    @classmethod
    def _any_site(cls, value: list[str]) -> list[str]:
        return [s for s in value if s.upper() not in {"ANY", "ALL"}]

    @field_validator("input_data", mode="after")
    @classmethod
    def _lfns(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            lfn = item[len(LFN_PREFIX) :] if item.upper().startswith(LFN_PREFIX) else item
            if not lfn.startswith("/"):
                raise ValueError(f"InputData {item!r}: an LFN is an absolute path")
            out.append(lfn)
        return out

    @field_validator("output_sandbox", "output_data", mode="after")
    @classmethod
    def _relative_outputs(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.upper().startswith(LFN_PREFIX):
                continue
            check_relative_name(item, "output file")
        return value

    @field_validator("std_output", "std_error", mode="after")
    @classmethod
    def _std_names(cls, value: str) -> str:
        return check_relative_name(value, "standard stream file")

    @model_validator(mode="after")
    def _platform_any(self) -> JobDescription:
        if self.platform.upper() == "ANY":
            self.platform = ""
        return self

    def sandbox_refs(self) -> list[str]:
        """The sha256 of every uploaded sandbox archive named in InputSandbox."""
        return [s[3:] for s in self.input_sandbox if SANDBOX_REF.match(s)]

    def to_jdl_dict(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_defaults=True)
        if "Environment" in data:  # JDL writes it as a list of NAME=value strings
            data["Environment"] = [f"{k}={v}" for k, v in data["Environment"].items()]
        if "OutputMetadata" in data:  # JDL has no mappings: a JSON string
            data["OutputMetadata"] = json.dumps(data["OutputMetadata"], sort_keys=True)
        return data

    def output_lfns(self, default_dir: str) -> dict[str, str]:
        """Each OutputData entry -> its LFN: ``LFN:`` entries as they are, others by file
        name under OutputPath (``default_dir`` when the job gives none)."""
        out = {}
        for entry in self.output_data:
            if entry.upper().startswith(LFN_PREFIX):
                out[entry] = entry[len(LFN_PREFIX) :]
            else:
                base = (self.output_path or default_dir).rstrip("/")
                out[entry] = f"{base}/{entry.rsplit('/', 1)[-1]}"
        return out


class JobSummary(BaseModel):
    """The attributes of a job as listed by searches."""

    job_id: int
    status: JobStatus
    minor_status: str
    application_status: str
    owner: str
    owner_group: str
    job_name: str
    job_group: str
    job_type: str
    site: str
    priority: int
    submission_time: datetime
    last_update: datetime
    heartbeat_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    reschedule_count: int = 0
    pilot_id: int | None = None
    exit_code: int | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    peak_rss_bytes: int | None = None


class JobDetail(JobSummary):
    description: JobDescription
    jdl: str
    parameters: dict[str, str] = Field(default_factory=dict)


class HistoryEntry(BaseModel):
    status: JobStatus
    minor_status: str
    application_status: str
    time: datetime
    source: str
