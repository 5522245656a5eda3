"""Shared fixtures: a real database per test (SQLite, MariaDB or PostgreSQL) and services.

``CTAPROD_TEST_DB`` picks the engine: ``sqlite`` (default), ``mysql`` or ``postgresql``, or a
full SQLAlchemy URL. For MariaDB/PostgreSQL a private database is created for the session and
dropped at the end. ``CTAPROD_TEST_REQUIRE_DB=1`` (set by CI) turns an unreachable database
into a failure instead of a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_URLS = {
    "mysql": "mysql+pymysql://root@127.0.0.1:3306",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432",
}


def _engine_name() -> str:
    return os.environ.get("CTAPROD_TEST_DB", "sqlite")


@pytest.fixture(scope="session")
def server_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database URL for this test session (created empty, dropped afterwards)."""
    from sqlalchemy import create_engine, text

    kind = _engine_name()
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'session.db'}"
        return
    base = DEFAULT_URLS.get(kind, kind)
    name = f"ctaprod_test_{uuid.uuid4().hex[:10]}"
    admin_db = "postgres" if base.startswith("postgresql") else "mysql"
    try:
        eng = create_engine(f"{base}/{admin_db}", isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CTAPROD_TEST_REQUIRE_DB"):
            pytest.fail(f"database {kind} unreachable: {exc}")
        pytest.skip(f"database {kind} unreachable ({exc}); start it or use CTAPROD_TEST_DB=sqlite")
    yield f"{base}/{name}"
    with eng.connect() as conn:
        if base.startswith("postgresql"):
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        else:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    eng.dispose()


@pytest.fixture(scope="session")
def _migrated(server_db_url: str) -> str:
    from ctaprod.db import migrate
    from ctaprod.db.engine import Database

    db = Database(server_db_url)
    migrate.upgrade(db)
    db.dispose()
    return server_db_url


@pytest.fixture
def db_url(_migrated: str) -> str:
    """The session database, emptied before each test."""
    from ctaprod.db.engine import Database
    from ctaprod.db.tables import metadata

    db = Database(_migrated)
    with db.write() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    db.dispose()
    return _migrated


@pytest.fixture
def settings(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from ctaprod.core.settings import Settings

    # No extension: the tests declare the metadata fields they use (those of the CTA
    # extension would collide); tests of an extension ask for it (settings.extensions).
    return Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="test-secret-" + "x" * 40,
        extensions=[],
    )


@pytest.fixture
def services(settings):  # type: ignore[no-untyped-def]
    from ctaprod.server.services import build_services

    svc = build_services(settings, migrate_db=False)
    yield svc
    svc.ctx.db.dispose()


@pytest.fixture
def tokens(services):  # type: ignore[no-untyped-def]
    """(admin token, pilot token) of a bootstrapped installation."""
    from ctaprod.server.services import ensure_identities

    admin, pilot = ensure_identities(services)
    return admin, pilot


@pytest.fixture
def api(services):  # type: ignore[no-untyped-def]
    """The FastAPI app on the test database (in-process)."""
    from ctaprod.api.app import create_app

    return create_app(services)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(api, tokens):  # type: ignore[no-untyped-def]
    """A real HTTP server (uvicorn in a thread) on the test database.

    Yields an object with ``url``, ``admin_token``, ``pilot_token`` and ``services``.
    """
    import threading
    import time
    from types import SimpleNamespace

    import httpx
    import uvicorn

    port = free_port()
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        raise RuntimeError("live server did not start")
    yield SimpleNamespace(
        url=url, admin_token=tokens[0], pilot_token=tokens[1], services=api.state.services
    )
    server.should_exit = True
    thread.join(timeout=10)
