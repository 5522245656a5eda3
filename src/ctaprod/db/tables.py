"""All tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ctaprod.db.types import BigId, LongText, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NAME = 64  # user and group names

# --- identity -------------------------------------------------------------------------
users = Table(
    "users",
    metadata,
    Column("name", String(NAME), primary_key=True),
    Column("email", String(255), nullable=False, server_default=""),
    Column("created", UTCDateTime, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
)
groups = Table(
    "groups",
    metadata,
    Column("name", String(NAME), primary_key=True),
    Column("properties", String(512), nullable=False, server_default=""),
    Column("share", Float, nullable=False, server_default="1"),
    Column("description", String(255), nullable=False, server_default=""),
)
user_groups = Table(
    "user_groups",
    metadata,
    Column("user", String(NAME), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("group", String(NAME), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True),
)
tokens = Table(
    "tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("user", String(NAME), nullable=False, index=True),
    Column("group", String(NAME), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("description", String(255), nullable=False, server_default=""),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)
sites = Table(
    "sites",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(255), nullable=False, server_default=""),
    Column("updated_by", String(NAME), nullable=False, server_default=""),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- jobs -----------------------------------------------------------------------------
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", BigId, primary_key=True, autoincrement=True),
    Column("status", String(16), nullable=False),
    Column("minor_status", String(128), nullable=False, server_default=""),
    Column("application_status", String(255), nullable=False, server_default=""),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("job_name", String(255), nullable=False, server_default=""),
    Column("job_group", String(255), nullable=False, server_default=""),
    Column("job_type", String(64), nullable=False),
    Column("site", String(128), nullable=False, server_default="ANY"),
    Column("priority", Integer, nullable=False, server_default="1"),
    Column("cpu_time", Integer, nullable=False),
    Column("submission_time", UTCDateTime, nullable=False),
    Column("last_update", UTCDateTime, nullable=False),
    Column("heartbeat_time", UTCDateTime, nullable=True),
    Column("start_time", UTCDateTime, nullable=True),
    Column("end_time", UTCDateTime, nullable=True),
    Column("reschedule_count", Integer, nullable=False, server_default="0"),
    Column("pilot_id", BigId, nullable=True),
    Column("tq_id", BigId, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("cpu_seconds", Float, nullable=True),
    Column("wall_seconds", Float, nullable=True),
    Column("peak_rss_bytes", BigId, nullable=True),
    Column("kill_requested", Boolean, nullable=False, server_default="0"),
    Index(None, "status", "job_id"),
    Index(None, "owner", "status", "job_id"),
    Index(None, "owner", "job_id"),
    Index(None, "job_group", "job_id"),
    Index(None, "site", "status"),
    Index(None, "status", "heartbeat_time"),
    Index(None, "status", "last_update"),
    Index(None, "pilot_id"),
    Index(None, "submission_time"),
)
job_descriptions = Table(
    "job_descriptions",
    metadata,
    Column("job_id", BigId, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("description", LongText, nullable=False),
)
job_history = Table(
    "job_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "job_id", BigId, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("status", String(16), nullable=False),
    Column("minor_status", String(128), nullable=False, server_default=""),
    Column("application_status", String(255), nullable=False, server_default=""),
    Column("time", UTCDateTime, nullable=False),
    Column("source", String(64), nullable=False),
)
job_parameters = Table(
    "job_parameters",
    metadata,
    Column("job_id", BigId, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", LongText, nullable=False),
)

# --- task queues ----------------------------------------------------------------------
task_queues = Table(
    "task_queues",
    metadata,
    Column("tq_id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(40), nullable=False, unique=True),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("requirements", LongText, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)
tq_jobs = Table(
    "tq_jobs",
    metadata,
    Column("job_id", BigId, primary_key=True),
    # RESTRICT: a queue cannot be dropped while a job sits in it (see TaskQueueDB.drop_empty).
    Column("tq_id", BigId, ForeignKey("task_queues.tq_id", ondelete="RESTRICT"), nullable=False),
    Column("priority", Integer, nullable=False),
    Index(None, "tq_id", "priority", "job_id"),
)

# --- pilots ---------------------------------------------------------------------------
pilots = Table(
    "pilots",
    metadata,
    Column("pilot_id", BigId, primary_key=True, autoincrement=True),
    Column("stamp", String(64), nullable=False, unique=True),
    Column("ce_ref", String(255), nullable=False, server_default=""),
    Column("ce", String(255), nullable=False, server_default=""),
    Column("queue", String(255), nullable=False, server_default=""),
    Column("site", String(128), nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    Column("status_reason", String(255), nullable=False, server_default=""),
    Column("submission_time", UTCDateTime, nullable=False),
    Column("last_update", UTCDateTime, nullable=False),
    Column("jobs_done", Integer, nullable=False, server_default="0"),
    Index(None, "status", "ce", "queue"),
)
pilot_logs = Table(
    "pilot_logs",
    metadata,
    Column("pilot_id", BigId, ForeignKey("pilots.pilot_id", ondelete="CASCADE"), primary_key=True),
    Column("log", LongText, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
)

# --- sandboxes ------------------------------------------------------------------------
sandboxes = Table(
    "sandboxes",
    metadata,
    Column("sb_id", BigId, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("size", BigId, nullable=False),
    Column("se", String(64), nullable=False),
    Column("path", String(512), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("last_access", UTCDateTime, nullable=False),
    UniqueConstraint("sha256", "owner"),
    Index(None, "last_access"),
)
sandbox_refs = Table(
    "sandbox_refs",
    metadata,
    Column("job_id", BigId, primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("sb_id", BigId, ForeignKey("sandboxes.sb_id", ondelete="CASCADE"), primary_key=True),
    Index(None, "sb_id"),
)

# --- agents ---------------------------------------------------------------------------
agent_heartbeats = Table(
    "agent_heartbeats",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("replica", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("last_cycle", UTCDateTime, nullable=False),
    Column("cycles", BigId, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=False, server_default=""),
)
