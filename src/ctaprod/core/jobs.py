"""The job description model and the job records exchanged over the API."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ctaprod.core.jdl import format_value
from ctaprod.core.job_states import JobStatus

SANDBOX_REF = re.compile(r"^SB:[0-9a-f]{64}$")
LFN_PREFIX = "LFN:"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CUSTOM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
MAX_CUSTOM_ATTRIBUTES = 100
MAX_CUSTOM_TEXT = 65536


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


def custom_text(value: Any) -> str:
    """A custom attribute's value as shown in the job parameters (lists as JDL lists)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return format_value(value)


def _check_custom_value(name: str, value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _check_custom_value(name, item)
    elif value is None or not isinstance(value, (str, int, float, bool)):
        raise ValueError(
            f"attribute {name!r}: a value is a string, number, boolean or list, not "
            f"{type(value).__name__}"
        )


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
    # Metadata of single OutputData files (LFN -> fields), over OutputMetadata for that file:
    # what differs between the outputs of one job, e.g. the NSB of each sim_telarray output of
    # one MC run. JDL: a JSON string, as OutputMetadata.
    output_file_metadata: dict[str, dict[str, Any]] = Field(
        default_factory=dict, alias="OutputFileMetadata"
    )
    std_output: str = Field("std.out", alias="StdOutput", max_length=255)
    std_error: str = Field("std.err", alias="StdError", max_length=255)
    environment: dict[str, str] = Field(default_factory=dict, alias="Environment")
    # DIRAC's: a range of processors (NumberOfProcessors > 1 is an exact number), the RAM a
    # job needs to be matched (MinRAM; MaxRAM is its limit), the CEs it may run on, variables
    # for the payload (NAME=value, value URL-quoted as DIRAC's Job API writes it) and the
    # configuration arguments DIRAC's Job API passes as `--cfg`.
    min_number_of_processors: int | None = Field(None, alias="MinNumberOfProcessors", ge=1, le=1024)
    max_number_of_processors: int | None = Field(None, alias="MaxNumberOfProcessors", ge=1, le=1024)
    min_ram_mb: int = Field(0, alias="MinRAM", ge=0, le=4 * 1024 * 1024)
    grid_ce: StrList = Field(alias="GridCE")
    execution_environment: dict[str, str] = Field(
        default_factory=dict, alias="ExecutionEnvironment"
    )
    job_config_args: str = Field("", alias="JobConfigArgs", max_length=65536)
    # The payload gets its own job token (a file named by CTAPROD_TOKEN_FILE) only if asked.
    payload_token: bool = Field(False, alias="PayloadToken")
    # Attributes ctaprod does not interpret (DIRAC keeps them); shown as job parameters.
    custom_attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator(
        "sites",
        "banned_sites",
        "tags",
        "input_sandbox",
        "output_sandbox",
        "input_data",
        "output_data",
        "output_se",
        "grid_ce",
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

    @field_validator("execution_environment", mode="before")
    @classmethod
    def _execution_environment(cls, value: Any) -> Any:
        # DIRAC: {"A=1", "B=x%20y"} or "A=1;B=2", values URL-quoted; a mapping (YAML, JSON,
        # the stored description) is taken as it is.
        if isinstance(value, str):
            value = [v for v in value.split(";") if v.strip()]
        if isinstance(value, list):
            env = {}
            for item in value:
                key, sep, val = str(item).strip().partition("=")
                if not sep:
                    raise ValueError(f"ExecutionEnvironment entry {item!r} is not NAME=value")
                env[key] = unquote(val)
            value = env
        if isinstance(value, dict):
            for key in value:
                if not ENV_NAME.fullmatch(str(key)):
                    raise ValueError(f"ExecutionEnvironment: {key!r} is not a variable name")
            return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value

    @field_validator("custom_attributes", mode="after")
    @classmethod
    def _custom(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_CUSTOM_ATTRIBUTES:
            raise ValueError(f"more than {MAX_CUSTOM_ATTRIBUTES} custom attributes")
        for name, item in value.items():
            if not CUSTOM_NAME.fullmatch(name) or len(name) > 128:
                raise ValueError(f"{name!r} is not a valid attribute name")
            _check_custom_value(name, item)
            if isinstance(item, (str, list)) and len(custom_text(item)) > MAX_CUSTOM_TEXT:
                raise ValueError(f"attribute {name!r}: longer than {MAX_CUSTOM_TEXT} characters")
        return value

    @field_validator("output_metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        value = _json_object(value, "OutputMetadata")
        if not isinstance(value, dict):
            raise ValueError("OutputMetadata must map metadata field names to values")
        return value

    @field_validator("output_file_metadata", mode="before")
    @classmethod
    def _file_metadata(cls, value: Any) -> Any:
        value = _json_object(value, "OutputFileMetadata")
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ValueError(
                "OutputFileMetadata must map output LFNs to mappings of metadata field values"
            )
        return {_strip_lfn(str(k)): v for k, v in value.items()}

    @model_validator(mode="after")
    def _file_metadata_of_outputs(self) -> JobDescription:
        relative = any(not e.upper().startswith(LFN_PREFIX) for e in self.output_data)
        if not self.output_file_metadata or (relative and not self.output_path):
            return self  # the LFNs of relative entries are known on the worker only
        outputs = set(self.output_lfns(self.output_path).values())
        stray = sorted(set(self.output_file_metadata) - outputs)
        if stray:
            raise ValueError(f"OutputFileMetadata names {stray[0]!r}, not an OutputData LFN")
        return self

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

    @model_validator(mode="after")
    def _consistent(self) -> JobDescription:
        low, high = self.min_number_of_processors, self.max_number_of_processors
        exact = self.number_of_processors
        if exact > 1 and ((low or exact) > exact or (high or exact) < exact):
            raise ValueError(
                f"NumberOfProcessors {exact} is outside MinNumberOfProcessors/"
                f"MaxNumberOfProcessors ({low or 1}-{high or 'any'})"
            )
        if low and high and high < low:
            raise ValueError(
                f"MaxNumberOfProcessors {high} is less than MinNumberOfProcessors {low}"
            )
        if self.min_ram_mb and self.max_ram_mb and self.min_ram_mb > self.max_ram_mb:
            raise ValueError(
                f"MinRAM {self.min_ram_mb} MB is more than MaxRAM {self.max_ram_mb} MB"
            )
        for name, value in self.execution_environment.items():
            if self.environment.get(name, value) != value:
                raise ValueError(
                    f"variable {name!r} differs in Environment and ExecutionEnvironment"
                )
        return self

    def processor_range(self) -> tuple[int, int | None]:
        """(fewest, most) processors the job can use; most None: as many as it gets.
        NumberOfProcessors > 1 is exact (DIRAC's Job API also writes it as the maximum)."""
        if self.number_of_processors > 1:
            return self.number_of_processors, self.number_of_processors
        if self.min_number_of_processors is None and self.max_number_of_processors is None:
            return 1, 1
        return self.min_number_of_processors or 1, self.max_number_of_processors

    def cpu_limit_seconds(self) -> float | None:
        """CPU seconds the payload may use: CPUTime per processor it may use (no limit when
        it may use any number)."""
        most = self.processor_range()[1]
        return None if most is None else float(self.cpu_time * most)

    def memory_requirement_mb(self) -> int:
        """The memory a resource must offer: MinRAM, else MaxRAM (as DIRAC's pool CE)."""
        return self.min_ram_mb or self.max_ram_mb

    def payload_environment(self) -> dict[str, str]:
        """The variables set for the payload: Environment and ExecutionEnvironment."""
        return {**self.environment, **self.execution_environment}

    def command_arguments(self) -> str:
        """Arguments, with ``--cfg JobConfigArgs`` appended as DIRAC's Job API does (not
        twice when the JDL, written by that API, already has it)."""
        if not self.job_config_args:
            return self.arguments
        cfg = f"--cfg {self.job_config_args}"
        if cfg in self.arguments:
            return self.arguments
        return f"{self.arguments} {cfg}" if self.arguments else cfg

    def custom_parameters(self) -> dict[str, str]:
        """The custom attributes as job parameters (name -> text)."""
        return {k: custom_text(v) for k, v in self.custom_attributes.items()}

    def sandbox_refs(self) -> list[str]:
        """The sha256 of every uploaded sandbox archive named in InputSandbox."""
        return [s[3:] for s in self.input_sandbox if SANDBOX_REF.match(s)]

    def to_jdl_dict(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_defaults=True)
        data.update(data.pop("custom_attributes", {}))
        if "Environment" in data:  # JDL writes it as a list of NAME=value strings
            data["Environment"] = [f"{k}={v}" for k, v in data["Environment"].items()]
        if "ExecutionEnvironment" in data:  # DIRAC's form: values URL-quoted
            data["ExecutionEnvironment"] = [
                f"{k}={quote(v)}" for k, v in data["ExecutionEnvironment"].items()
            ]
        for key in ("OutputMetadata", "OutputFileMetadata"):  # JDL has no mappings: JSON
            if key in data:
                data[key] = json.dumps(data[key], sort_keys=True)
        return data

    def metadata_of(self, lfn: str) -> dict[str, Any]:
        """The metadata to register output ``lfn`` with: OutputMetadata, then its own
        entry of OutputFileMetadata over it."""
        return {**self.output_metadata, **self.output_file_metadata.get(lfn, {})}

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


def _json_object(value: Any, what: str) -> Any:
    """A JDL value that stands for a mapping (a JSON text) as the mapping; None as {}."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"{what} is not a JSON object: {exc}") from None
    return {} if value is None else value


def _strip_lfn(entry: str) -> str:
    return entry[len(LFN_PREFIX) :] if entry.upper().startswith(LFN_PREFIX) else entry


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
