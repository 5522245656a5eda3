"""All tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
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
from sqlalchemy.dialects import mysql, postgresql

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
    # Counters kept by TaskQueueDB (enqueue/dequeue/claim) in the same transactions as the
    # tq_jobs rows: the jobs waiting here and their highest priority (0 when empty), so the
    # matcher's snapshot reads one row per queue instead of grouping the waiting jobs.
    Column("waiting", Integer, nullable=False, server_default="0"),
    Column("max_priority", Integer, nullable=False, server_default="0"),
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
    # When the pilot's CE first did not know it (kept across agent restarts); NULL: known.
    Column("unknown_since", UTCDateTime, nullable=True),
    # When the pilot registered: its registration credential is used up from then on.
    Column("registered_at", UTCDateTime, nullable=True),
    # The last registration refused for this record (a replayed or misused credential).
    Column("registration_refused", String(255), nullable=True),
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
    # Written by the runner's liveness beat, independent of how long a cycle takes; NULL once
    # the replica stopped cleanly. Replicas read these to share work among the live ones.
    Column("alive_at", UTCDateTime, nullable=True),
)
# One row per API server process: since when it is up and when it last said so. The stalled
# job agent does not count silence across a period when no server could hear heartbeats.
service_liveness = Table(
    "service_liveness",
    metadata,
    Column("instance", String(255), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("up_since", UTCDateTime, nullable=False),
    Column("last_beat", UTCDateTime, nullable=False),
    Index(None, "service", "last_beat"),
)

# --- data management: file catalog -----------------------------------------------------
# Directories and files are rows with integer ids; a file is (dir_id, name).  Paths are
# looked up through a SHA-1 of the path (an LFN may be 1,024 characters, longer than a
# unique index allows on MariaDB); ``path`` itself is kept for listings.
LFN = 1024
SE_NAME = 64
# Names are case-sensitive (``File`` and ``file`` differ) and listed in byte order on every
# engine; LFN characters are ASCII, so MariaDB keeps them as ascii_bin (1 byte each).
CatalogName = (
    String(255)
    .with_variant(mysql.VARCHAR(255, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")
    .with_variant(postgresql.VARCHAR(255, collation="C"), "postgresql")
)

catalog_dirs = Table(
    "catalog_dirs",
    metadata,
    Column("dir_id", BigId, primary_key=True, autoincrement=True),
    Column("parent_id", BigId, nullable=True),
    Column("name", CatalogName, nullable=False),
    Column("path", String(LFN), nullable=False),
    Column("path_hash", String(40), nullable=False, unique=True),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Index(None, "parent_id", "name"),
)
catalog_files = Table(
    "catalog_files",
    metadata,
    Column("file_id", BigId, primary_key=True, autoincrement=True),
    Column("dir_id", BigId, nullable=False),
    Column("name", CatalogName, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checksum", String(16), nullable=False),
    Column("checksum_type", String(16), nullable=False, server_default="ADLER32"),
    Column("guid", String(36), nullable=False),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("status", String(16), nullable=False, server_default="AprioriGood"),
    Column("created", UTCDateTime, nullable=False),
    # The job attempt that wrote the file (NULL: registered by a user or an agent): a later
    # attempt of the same job may replace it (ADR 0004).
    Column("job_id", BigId, nullable=True),
    Column("attempt", Integer, nullable=True),
    UniqueConstraint("dir_id", "name"),
    Index(None, "guid"),
    Index(None, "job_id"),
)
catalog_replicas = Table(
    "catalog_replicas",
    metadata,
    Column("file_id", BigId, primary_key=True),
    Column("se", String(SE_NAME), primary_key=True),
    Column("status", String(16), nullable=False, server_default="AprioriGood"),
    Column("created", UTCDateTime, nullable=False),
    Index(None, "se", "file_id"),
)
catalog_ancestry = Table(
    "catalog_ancestry",
    metadata,
    Column("child_id", BigId, primary_key=True),
    Column("parent_id", BigId, primary_key=True),
    Index(None, "parent_id", "child_id"),
)
# Catalog events (outbox, ADR 0005): written in the transaction that registers files or
# changes metadata with ``seq`` NULL; the sequencer numbers the committed ones later, under
# the lock of the ``event_sequencer`` row, so that a consumer reading ``seq > cursor`` in
# ``seq`` order never steps over an event that commits late. ``event_id`` only orders the
# unsequenced rows. ``fields``: the metadata fields a ``file_meta``/``dir_meta`` event
# changed (comma-separated); ``se``: the storage element of a replica event.
catalog_events = Table(
    "catalog_events",
    metadata,
    Column("event_id", BigId, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("file_id", BigId, nullable=True),
    Column("dir_id", BigId, nullable=True),
    Column("se", String(SE_NAME), nullable=True),
    Column("fields", Text, nullable=True),
    Column("created", UTCDateTime, nullable=False),
    # Not unique: the sequencer's lock makes seq unique, and a unique index would make
    # InnoDB take next-key locks for duplicate checks when the sequencer sets it. The
    # unsequenced rows are the NULL end of this index (InnoDB and SQLite append the primary
    # key to it, so they come in event_id order).
    Index(None, "seq"),
)
# The sequencer's lock and high-water mark: one row (id 1), locked FOR UPDATE by each run
# on MariaDB/PostgreSQL (SQLite serializes writers anyway). ``last_seq`` survives pruning,
# so numbers are never reused.
event_sequencer = Table(
    "event_sequencer",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
)
# Durable consumer cursors: ``position`` is the last seq the consumer applied; it moves in
# the transaction that applies the events, so the effects and the cursor commit together.
event_cursors = Table(
    "event_cursors",
    metadata,
    Column("consumer", String(NAME), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
)

# --- data management: metadata ---------------------------------------------------------
# One namespace of typed fields.  Values: ints and datetimes (epoch microseconds) in
# ``vint``, floats in ``vfloat``, strings in ``vstr``.  ``dir_meta`` holds what was set on
# a directory; ``dir_meta_eff`` the effective value of every field for every directory
# (own or inherited, nearest wins), maintained on writes so that queries are index lookups.
# File values live in one narrow table per type so that each index holds only its type.
META_STR = 255
# String values compare case-sensitively on every engine (MariaDB's default collation
# would make particle=Gamma match gamma).
MetaString = String(META_STR).with_variant(
    mysql.VARCHAR(META_STR, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

meta_fields = Table(
    "meta_fields",
    metadata,
    Column("name", String(NAME), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("description", String(255), nullable=False, server_default=""),
)
dir_meta = Table(
    "dir_meta",
    metadata,
    Column("dir_id", BigId, primary_key=True),
    Column("field", String(NAME), primary_key=True),
    Column("vint", BigInteger, nullable=True),
    Column("vfloat", Double(), nullable=True),
    Column("vstr", MetaString, nullable=True),
    Index(None, "field", "dir_id"),
)
dir_meta_eff = Table(
    "dir_meta_eff",
    metadata,
    Column("dir_id", BigId, primary_key=True),
    Column("field", String(NAME), primary_key=True),
    Column("source_dir_id", BigId, nullable=False),
    Column("vint", BigInteger, nullable=True),
    Column("vfloat", Double(), nullable=True),
    Column("vstr", MetaString, nullable=True),
    Index(None, "field", "vstr", "dir_id"),
    Index(None, "field", "vint", "dir_id"),
    Index(None, "field", "vfloat", "dir_id"),
    Index(None, "source_dir_id"),
)
file_meta_int = Table(
    "file_meta_int",
    metadata,
    Column("file_id", BigId, primary_key=True),
    Column("field", String(NAME), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("dir_id", BigId, nullable=False),  # the file's (files never move): see db/metadata
    Index(None, "field", "value", "dir_id", "file_id"),
)
file_meta_float = Table(
    "file_meta_float",
    metadata,
    Column("file_id", BigId, primary_key=True),
    Column("field", String(NAME), primary_key=True),
    Column("value", Double(), nullable=False),
    Column("dir_id", BigId, nullable=False),  # the file's (files never move): see db/metadata
    Index(None, "field", "value", "dir_id", "file_id"),
)
file_meta_str = Table(
    "file_meta_str",
    metadata,
    Column("file_id", BigId, primary_key=True),
    Column("field", String(NAME), primary_key=True),
    Column("value", MetaString, nullable=False),
    Column("dir_id", BigId, nullable=False),  # the file's (files never move): see db/metadata
    Index(None, "field", "value", "dir_id", "file_id"),
)
datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("query", LongText, nullable=False),
    Column("status", String(16), nullable=False, server_default="Dynamic"),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("created", UTCDateTime, nullable=False),
    Column("frozen_at", UTCDateTime, nullable=True),
    Column("file_count", BigInteger, nullable=True),
    Column("total_size", BigInteger, nullable=True),
)
dataset_files = Table(
    "dataset_files",
    metadata,
    Column("dataset_id", BigId, primary_key=True),
    Column("file_id", BigId, primary_key=True),
)

# --- data management: storage element status -------------------------------------------
# The configuration names the SEs; the database keeps what operators change at run time:
# read/write bans with their reason, and the history of every change.
se_status = Table(
    "se_status",
    metadata,
    Column("se", String(SE_NAME), primary_key=True),
    Column("read_allowed", Boolean, nullable=False, server_default="1"),
    Column("write_allowed", Boolean, nullable=False, server_default="1"),
    Column("read_reason", String(512), nullable=False, server_default=""),
    Column("write_reason", String(512), nullable=False, server_default=""),
    Column("last_update", UTCDateTime, nullable=False),
)
se_history = Table(
    "se_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("se", String(SE_NAME), nullable=False),
    Column("access", String(8), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("reason", String(512), nullable=False, server_default=""),
    Column("author", String(NAME), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Index(None, "se", "time"),
)

# --- request management ----------------------------------------------------------------
requests = Table(
    "requests",
    metadata,
    Column("request_id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, server_default=""),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("job_id", BigId, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("last_update", UTCDateTime, nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("assigned_by", String(128), nullable=False, server_default=""),
    Column("error", String(2048), nullable=False, server_default=""),
    # The claim's lease: an Assigned request whose lease passed is released (its executor
    # died); the live executor renews it while it holds the request.
    Column("lease_until", UTCDateTime, nullable=True),
    Index(None, "status", "not_before"),
    Index(None, "job_id"),
    Index(None, "owner", "request_id"),
)
request_operations = Table(
    "request_operations",
    metadata,
    Column("op_id", BigId, primary_key=True, autoincrement=True),
    Column(
        "request_id",
        BigId,
        ForeignKey("requests.request_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("arguments", LongText, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", String(2048), nullable=False, server_default=""),
    Column("last_update", UTCDateTime, nullable=False),
    UniqueConstraint("request_id", "position"),
)
request_files = Table(
    "request_files",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "op_id",
        BigId,
        ForeignKey("request_operations.op_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("lfn", String(LFN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", String(2048), nullable=False, server_default=""),
    Column("size", BigInteger, nullable=True),
    Column("checksum", String(16), nullable=True),
    Column("guid", String(36), nullable=True),
    Index(None, "op_id"),
)

# --- transformations -------------------------------------------------------------------
# A transformation turns input files (found by its catalog query) into tasks (jobs or
# requests). ``definition`` keeps the whole validated definition (JSON); the columns beside
# it are what queries and agents filter on.
TRANS_NAME = 128
transformations = Table(
    "transformations",
    metadata,
    Column("trans_id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(TRANS_NAME), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("description", String(1024), nullable=False, server_default=""),
    # The catalog query of the input files; NULL for types without input (MCSimulation).
    Column("input_query", LongText, nullable=True),
    # Grouping plugin and size (files, or bytes for BySize); NULL for types without input.
    Column("plugin", String(32), nullable=True),
    Column("group_size", BigInteger, nullable=True),
    Column("max_tasks", Integer, nullable=True),
    Column("max_errors", Integer, nullable=False),
    Column("definition", LongText, nullable=False),
    # Tasks made so far (MCSimulation: the next run number is derived from it).
    Column("tasks_created", Integer, nullable=False, server_default="0"),
    # Set when no more input will come (the parent step finished): the last, smaller groups
    # are then made (flush).
    Column("input_complete", Boolean, nullable=False, server_default="0"),
    Column("created", UTCDateTime, nullable=False),
    Column("last_update", UTCDateTime, nullable=False),
    # Test mode: at most this many input files are ever attached (NULL: no limit).
    Column("input_limit", Integer, nullable=True),
    Index(None, "status"),
)
# The files of a transformation and where each stands. One row per (transformation, file):
# a file can be in one live task of a transformation only (``task_id``).
trans_files = Table(
    "trans_files",
    metadata,
    # A key of its own: the door of transformation files works on one integer per row.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "trans_id",
        BigId,
        ForeignKey("transformations.trans_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("file_id", BigId, nullable=False),
    Column("status", String(16), nullable=False),
    Column("task_id", BigId, nullable=True),
    Column("error_count", Integer, nullable=False, server_default="0"),
    Column("last_error", String(1024), nullable=False, server_default=""),
    Column("last_update", UTCDateTime, nullable=False),
    UniqueConstraint("trans_id", "file_id"),
    Index(None, "trans_id", "status", "file_id"),
    Index(None, "file_id"),
    Index(None, "task_id"),
)
trans_tasks = Table(
    "trans_tasks",
    metadata,
    Column("task_id", BigId, primary_key=True, autoincrement=True),
    Column(
        "trans_id",
        BigId,
        ForeignKey("transformations.trans_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("status", String(16), nullable=False),
    # MCSimulation: the run number of the task (unique in its transformation).
    Column("run_number", BigInteger, nullable=True),
    Column("job_id", BigId, nullable=True),
    Column("request_id", BigId, nullable=True),
    Column("error", String(1024), nullable=False, server_default=""),
    Column("created", UTCDateTime, nullable=False),
    Column("submitted", UTCDateTime, nullable=True),
    Column("ended", UTCDateTime, nullable=True),
    Column("last_update", UTCDateTime, nullable=False),
    Index(None, "trans_id", "status", "task_id"),
    Index(None, "job_id"),
    Index(None, "request_id"),
    UniqueConstraint("trans_id", "run_number"),
)
# The input files of each task (kept after the task ends: which inputs made which outputs).
trans_task_files = Table(
    "trans_task_files",
    metadata,
    Column(
        "task_id",
        BigId,
        ForeignKey("trans_tasks.task_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("file_id", BigId, primary_key=True),
    Index(None, "file_id"),
)
# Every action on a transformation: who, what, when.
trans_log = Table(
    "trans_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "trans_id",
        BigId,
        ForeignKey("transformations.trans_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("time", UTCDateTime, nullable=False),
    Column("author", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("message", String(2048), nullable=False, server_default=""),
    Index(None, "trans_id", "id"),
)
# Directory metadata changes whose files are still to be tested against the transformations
# (a directory can hold a million files: they are paged through in transactions of their own,
# the progress kept here, instead of inside the event consumer's transaction).
trans_dir_scans = Table(
    "trans_dir_scans",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("dir_id", BigId, nullable=False),
    Column("fields", String(2048), nullable=False, server_default=""),
    Column("after_file", BigInteger, nullable=False, server_default="0"),
    Column("created", UTCDateTime, nullable=False),
)

# --- productions ----------------------------------------------------------------------------
# A production: a DAG of steps, each one transformation, created together. ``definition``
# keeps the generic definition as submitted (JSON); the validation columns keep the outcome of
# the last production validation (status, its report's summary as JSON, when and by whom).
productions = Table(
    "productions",
    metadata,
    Column("prod_id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(TRANS_NAME), nullable=False, unique=True),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("owner", String(NAME), nullable=False),
    Column("owner_group", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("definition", LongText, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("last_update", UTCDateTime, nullable=False),
    Column("validation_status", String(16), nullable=False, server_default="NotValidated"),
    Column("validation_summary", LongText, nullable=True),
    Column("validated", UTCDateTime, nullable=True),
    Column("validated_by", String(128), nullable=True),
    Index(None, "status"),
)
# The steps of a production, each one transformation; ``position``: the creation order (a
# topological order of the DAG); ``parents``: the parents' step ids (JSON list).
production_steps = Table(
    "production_steps",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("prod_id", BigId, ForeignKey("productions.prod_id", ondelete="CASCADE"), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("step_name", String(128), nullable=False, server_default=""),
    Column("position", Integer, nullable=False),
    Column("trans_id", BigId, ForeignKey("transformations.trans_id"), nullable=False),
    Column("parents", String(2048), nullable=False, server_default="[]"),
    UniqueConstraint("prod_id", "step_id"),
    Index(None, "trans_id"),
)
production_log = Table(
    "production_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("prod_id", BigId, ForeignKey("productions.prod_id", ondelete="CASCADE"), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("author", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("message", String(2048), nullable=False, server_default=""),
    Index(None, "prod_id", "id"),
)
