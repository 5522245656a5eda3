"""The database handle: one engine per process, write and read transactions.

SQLite (the embedded default) runs in WAL mode with one writer at a time: write transactions
take a process-wide lock and start with ``BEGIN IMMEDIATE``, so that concurrent threads queue
in Python instead of spinning on SQLITE_BUSY. MariaDB and PostgreSQL run at READ COMMITTED;
row claims there use ``SELECT ... FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ctaprod.db import limits
from ctaprod.db.tables import metadata


def normalize_url(url: str) -> str:
    """Pick our drivers for bare ``mysql://``, ``mariadb://`` and ``postgresql://`` URLs."""
    for prefix, driver in (
        ("mysql://", "mysql+pymysql://"),
        ("mariadb://", "mysql+pymysql://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
    ):
        if url.startswith(prefix):
            url = driver + url[len(prefix) :]
    if url.startswith("mysql+pymysql://") and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return url


class Database:
    """Owns the engine. Callers use :meth:`write` or :meth:`read`; DB classes never commit."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
            kwargs["pool_size"] = pool_size
        else:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_recycle=3600,
                isolation_level="READ COMMITTED",
            )
        self.engine: Engine = create_engine(self.url, **kwargs)
        # Values too long or too big for their column: the same InvalidInput on every engine.
        event.listen(self.engine, "before_execute", limits.before_execute)
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def supports_skip_locked(self) -> bool:
        return self.dialect in {"postgresql", "mysql", "mariadb"}

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        if self._write_lock is not None:
            with self._write_lock, self.engine.connect() as conn:
                conn = conn.execution_options(ctaprod_write=True)
                with conn.begin():
                    yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (rolled back at the end)."""
        with self.engine.connect() as conn:
            yield conn
            conn.rollback()

    def create_all(self) -> None:
        """Create the tables directly (tests and benchmarks); production uses migrations."""
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ctaprod_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_deadlock(exc: DBAPIError) -> bool:
    """Whether the database aborted the transaction to break a deadlock (safe to retry)."""
    if exc.connection_invalidated:
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL (psycopg)
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in (1213, 1205)  # MySQL/MariaDB: deadlock, lock wait
