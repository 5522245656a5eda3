"""Composition root: settings -> database -> context, token service, matcher, API app."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from ctaprod.api.app import create_app
from ctaprod.api.deps import Services
from ctaprod.core.properties import TokenKind
from ctaprod.core.settings import Settings
from ctaprod.db import migrate
from ctaprod.db.engine import Database
from ctaprod.logic.auth import TokenService, bootstrap
from ctaprod.logic.context import Context
from ctaprod.logic.homes import ensure_all_homes
from ctaprod.logic.matcher import Matcher
from ctaprod.server.extensions import install as install_extensions

log = logging.getLogger("ctaprod.server")


def _secret(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = settings.state_dir / "secret.key"
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def build_services(settings: Settings, *, migrate_db: bool = True) -> Services:
    """Everything a server or agent process needs, wired once."""
    if not settings.database_url:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url())
    if migrate_db:
        migrate.upgrade(db)
    ctx = Context(db=db, settings=settings)
    install_extensions(ctx)  # job types, formats, metadata fields of the extensions
    tokens = TokenService(ctx, _secret(settings))
    return Services(ctx=ctx, tokens=tokens, matcher=Matcher(ctx, tokens))


def build_app(settings: Settings, *, migrate_db: bool = True) -> FastAPI:
    return create_app(build_services(settings, migrate_db=migrate_db))


def ensure_identities(services: Services) -> tuple[str | None, str | None]:
    """Bootstrap default groups/users on an empty DB; then return (admin, pilot) tokens."""
    if not bootstrap(services.ctx):
        return None, None
    s = services.ctx.settings
    admin = services.tokens.issue(
        "admin",
        "ctao_admin",
        TokenKind.USER,
        timedelta(days=s.user_token_days),
        "bootstrap admin token",
    )
    pilot = services.tokens.issue(
        "pilot",
        "ctao_pilot",
        TokenKind.PILOT,
        timedelta(days=s.pilot_token_days),
        "bootstrap pilot token",
    )
    return admin.token, pilot.token


ADMIN_TOKEN_FILE = "admin-token"


def first_start(services: Services) -> Path | None:
    """Set up an installation whose database is empty, then give every user a home.

    On an empty database: the default groups, the ``admin`` and ``pilot`` users, and one admin
    token written (mode 0600) to ``<state_dir>/admin-token``, whose path is returned. It is
    never printed or logged: the caller shows the path. On a database set up already: None,
    and no token is issued (the first one is given exactly once).
    """
    created = bootstrap(services.ctx)
    ensure_all_homes(services.ctx)
    if not created:
        return None
    s = services.ctx.settings
    issued = services.tokens.issue(
        "admin",
        "ctao_admin",
        TokenKind.USER,
        timedelta(days=s.user_token_days),
        "first admin token",
    )
    path = s.state_dir / ADMIN_TOKEN_FILE
    write_private(path, issued.token + "\n")
    return path


def secure_state_dir(settings: Settings) -> None:
    """Make the state directory owner-only (0700), and its secrets -- the key, the first
    admin token, an SQLite database -- readable by their owner only (0600), also where an
    older version left them world-readable. New files get owner-only modes from the umask
    of ``ctaprod up`` (077)."""
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    url = settings.db_url()
    candidates = [state / "secret.key", state / ADMIN_TOKEN_FILE]
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        candidates += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    for path in candidates:
        if path.is_file():
            os.chmod(path, 0o600)


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
