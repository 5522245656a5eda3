"""Typed server-side settings: one TOML file plus ``CTAPROD_*`` environment variables.

Environment variables win over the file (nested fields with ``__``, e.g.
``CTAPROD_JOBS__MAX_RESCHEDULES=5``). Nothing here is global: the composition root loads a
:class:`Settings` once and passes it (or parts of it) down.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The embedded data SEs used when no storage element is configured.
LOCAL_SITE = "LOCAL.localhost.org"
LOCAL_DISK_SE = "LOCAL-DISK"
LOCAL_FAILOVER_SE = "LOCAL-FAILOVER"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ctaprod"


class JobSettings(BaseModel):
    max_reschedules: int = Field(3, ge=0, description="Reschedules before a job is Failed")
    min_cpu_time: int = Field(1, ge=1)
    max_cpu_time: int = Field(7 * 86400, ge=1)
    max_parametric_jobs: int = Field(10_000, ge=1)
    # CTADIRAC merges up to 10,000 files in one job ("merge everything" steps of production
    # files), so the default allows that many.
    max_input_data: int = Field(10_000, ge=0)
    max_jobs_per_call: int = Field(10_000, ge=1)
    heartbeat_interval: float = Field(60.0, gt=0, description="Seconds between heartbeats")
    stalled_after: float = Field(1800.0, gt=0, description="No heartbeat this long: Stalled")
    failed_after: float = Field(7200.0, gt=0, description="Stalled this long: reschedule/fail")
    stalled_policy: Literal["reschedule", "fail"] = "reschedule"
    job_token_hours: float = Field(24.0, gt=0, description="Lifetime added to the job CPU time")
    matched_timeout: float = Field(600.0, gt=0, description="Matched but never started")


class SandboxSettings(BaseModel):
    max_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest sandbox upload")
    max_unpacked_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest total size of a sandbox's files, unpacked"
    )
    max_members: int = Field(10_000, ge=1, description="Most files and directories in a sandbox")
    storage_element: str = "SandboxSE"
    unused_retention_days: float = Field(1.0, ge=0)


class CleaningSettings(BaseModel):
    done_retention_days: float = Field(7.0, ge=0)
    failed_retention_days: float = Field(14.0, ge=0)
    deleted_retention_days: float = Field(0.0, ge=0)


class StorageElementConfig(BaseModel):
    """One storage element: how to reach it, where it is, what it may be used for.

    ``read``/``write`` are the configured access; operators ban an SE at run time
    (``ctaprod se ban``), which the database records on top of this.
    """

    plugin: str = "posix"
    base_path: str = ""
    endpoint: str = ""
    site: str = ""
    read: bool = True
    write: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class DataSettings(BaseModel):
    """Data management: default and failover storage, transfer retries, request policy."""

    default_se: str = Field("", description="SE for uploads that name none; empty: first SE")
    se_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Named lists of SEs; the group 'failover' is where outputs go when "
        "every target SE fails",
    )
    verify_registration: bool = Field(
        True, description="Check size and checksum on storage before registering a replica"
    )
    input_data_policy: dict[str, str] = Field(
        default_factory=dict,
        description="Job type -> 'require' (run only where a replica is) or 'prefer'; "
        "other types: 'prefer'",
    )
    request_max_attempts: int = Field(10, ge=1)
    request_backoff_seconds: float = Field(30.0, gt=0)
    request_backoff_max_seconds: float = Field(3600.0, gt=0)
    request_lease_seconds: float = Field(
        45.0,
        gt=0,
        description="An executor's claim on a request lasts this long unless renewed (the live "
        "executor renews it every third of it); a dead executor's requests are released once "
        "it passed, at the next executor cycle",
    )
    max_lfns_per_call: int = Field(10_000, ge=1)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class QueueConfig(BaseModel):
    """A batch queue the pilot factory fills with pilots."""

    ce_type: str = "local"
    ce: str = "localhost"
    site: str = "LOCAL.localhost.org"
    max_waiting: int = Field(4, ge=0)
    max_total: int = Field(4, ge=0)
    platform: str = ""
    tags: list[str] = Field(default_factory=list)
    cpu_time: int = Field(172800, ge=1, description="CPU seconds a pilot may use")
    memory_mb: int = Field(2048, ge=0)
    processors: int = Field(1, ge=1)
    max_empty_matches: int = Field(3, ge=1, description="Pilot stops after N empty matches")
    pilot_lifetime: int = Field(3600, ge=1)
    max_queued_hours: float = Field(
        6.0,
        gt=0,
        description="How long a pilot may wait in the batch queue: its registration "
        "credential's lifetime",
    )
    options: dict[str, Any] = Field(default_factory=dict)
    # What this site's payloads see besides their job's own Environment, e.g. how the site
    # provides the CTA software (CTAPROD_CTA_SOFTWARE=cvmfs|apptainer, CTAPROD_CTA_IMAGE).
    environment: dict[str, str] = Field(default_factory=dict)
    # How its pilots isolate payloads (CTAPROD_PILOT_SANDBOX): "" leaves the pilot's default
    # (auto: bwrap when it works, else none with a warning); apptainer needs an image.
    sandbox: Literal["", "auto", "none", "bwrap", "apptainer"] = ""
    apptainer_image: str = Field("", description="Apptainer image of the payloads (CVMFS path)")

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"environment: {key!r} is not a variable name")
            if key.startswith(("CTAPROD_PILOT_", "CTAPROD_TOKEN")):
                raise ValueError(f"environment: {key!r} is the pilot's own (not settable)")
        return value


class AgentSettings(BaseModel):
    interval: float = Field(30.0, gt=0)
    enabled: bool = True


def _agents() -> dict[str, AgentSettings]:
    return {
        "pilot_factory": AgentSettings(interval=10),
        "pilot_status": AgentSettings(interval=30),
        "stalled_jobs": AgentSettings(interval=60),
        "job_cleaning": AgentSettings(interval=3600),
        "request_executor": AgentSettings(interval=10),
        "transformation_trigger": AgentSettings(interval=0.25),
        "task_creation": AgentSettings(interval=5),
        "task_submission": AgentSettings(interval=5),
        "transformation_recovery": AgentSettings(interval=30),
        "production": AgentSettings(interval=10),
    }


class TransformationSettings(BaseModel):
    """Where transformations may write, and how they are driven."""

    output_bases: list[str] = Field(
        default_factory=lambda: ["/ctao/MC", "/ctao/DATA", "/ctao/prod", "/ctao/tests"],
        description="Directories output LFN templates may write under (besides the owner's home)",
    )
    dry_run_files: int = Field(20, ge=0, le=10_000, description="LFNs a dry run lists")


class ApiLimits(BaseModel):
    """What one request may send: body sizes, how slowly, how deep its JSON goes."""

    json_max_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest body of a JSON route (most routes)"
    )
    submit_max_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        description="Largest body of a job submission and of a pilot's log (JDL text, logs)",
    )
    body_idle_seconds: float = Field(
        15.0, gt=0, description="A request body silent this long is refused with 408"
    )
    body_min_rate: int = Field(
        8 * 1024,
        ge=1,
        description="Bytes per second a body must average once body_idle_seconds have passed",
    )
    max_json_depth: int = Field(32, ge=2, description="Deepest nesting of a JSON body")
    upload_threads: int = Field(
        8, ge=1, description="Data uploads streamed to storage at once (each holds a thread)"
    )


class LivenessSettings(BaseModel):
    """How services tell they are alive, and how long a silence means one is gone."""

    server_beat_seconds: float = Field(
        10.0, gt=0, description="An API server process writes its liveness row this often"
    )
    agent_beat_seconds: float = Field(
        10.0, gt=0, description="An agent replica writes its liveness beat this often"
    )
    missed_beats: int = Field(
        3, ge=1, description="A server or agent replica silent for this many beats is gone"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CTAPROD_", env_nested_delimiter="__", extra="forbid"
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    database_url: str = Field("", description="Empty: SQLite in the state directory")
    host: str = "127.0.0.1"
    port: int = Field(8722, ge=0, le=65535)
    public_url: str = Field("", description="URL pilots use to reach the server")
    secret_key: str = Field("", description="Token signing key; empty: kept in the state dir")
    user_token_days: float = Field(30.0, gt=0)
    pilot_token_days: float = Field(7.0, gt=0)
    vo: str = "ctao"
    default_group_shares: dict[str, float] = Field(default_factory=dict)
    jobs: JobSettings = Field(default_factory=JobSettings)
    sandboxes: SandboxSettings = Field(default_factory=SandboxSettings)
    cleaning: CleaningSettings = Field(default_factory=CleaningSettings)
    storage_elements: dict[str, StorageElementConfig] = Field(default_factory=dict)
    data: DataSettings = Field(default_factory=DataSettings)
    queues: dict[str, QueueConfig] = Field(default_factory=dict)
    agents: dict[str, AgentSettings] = Field(default_factory=_agents)
    liveness: LivenessSettings = Field(default_factory=LivenessSettings)
    api: ApiLimits = Field(default_factory=ApiLimits)
    transformations: TransformationSettings = Field(default_factory=TransformationSettings)
    extensions: list[str] | None = Field(
        None,
        description="Extensions to load (entry point names of ctaprod.extensions, e.g. cta); "
        "default: every one installed",
    )

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'ctaprod.db'}"

    def server_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def agent(self, name: str) -> AgentSettings:
        return self.agents.get(name) or _agents().get(name) or AgentSettings()

    def storage_element(self, name: str) -> StorageElementConfig:
        """The configuration of SE ``name`` (data SEs, embedded defaults, the sandbox SE);
        KeyError for an unknown name."""
        if name in self.storage_elements:
            return self.storage_elements[name]
        if name == self.sandboxes.storage_element:
            return StorageElementConfig(
                plugin="posix", base_path=str(self.state_dir / "storage" / name)
            )
        return self.data_storage_elements()[name]

    def data_storage_elements(self) -> dict[str, StorageElementConfig]:
        """The SEs that hold catalogued files: the configured ones (the sandbox SE aside),
        or, when none is configured, the embedded POSIX SEs LOCAL-DISK and LOCAL-FAILOVER."""
        configured = {
            name: se
            for name, se in self.storage_elements.items()
            if name != self.sandboxes.storage_element
        }
        if configured:
            return configured
        return {
            name: StorageElementConfig(
                plugin="posix", base_path=str(self.state_dir / "storage" / name), site=LOCAL_SITE
            )
            for name in (LOCAL_DISK_SE, LOCAL_FAILOVER_SE)
        }

    def data_se_groups(self) -> dict[str, list[str]]:
        """SE groups (``data.se_groups``); with the embedded SEs, ``failover`` is
        LOCAL-FAILOVER unless configured."""
        groups = {name: list(ses) for name, ses in self.data.se_groups.items()}
        if not any(n != self.sandboxes.storage_element for n in self.storage_elements):
            groups.setdefault("failover", [LOCAL_FAILOVER_SE])
        return groups

    def default_data_se(self) -> str:
        """The SE of uploads that name none: ``data.default_se``, else the first data SE
        that is not in the failover group."""
        if self.data.default_se:
            return self.data.default_se
        failover = set(self.data_se_groups().get("failover", []))
        names = list(self.data_storage_elements())
        return next((n for n in names if n not in failover), names[0])


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (TOML; default ``$CTAPROD_CONFIG``) and the environment."""
    path = config_file or (
        Path(os.environ["CTAPROD_CONFIG"]) if os.environ.get("CTAPROD_CONFIG") else None
    )

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    if path is not None and not path.is_file():
        raise FileNotFoundError(f"configuration file {path} does not exist")
    loaded = _Loaded(**overrides)
    # Only what the file, the environment or the caller set counts as set (model_fields_set).
    return Settings.model_validate(loaded.model_dump(exclude_unset=True))
