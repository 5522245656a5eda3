"""ASGI factory for running the API under uvicorn/gunicorn with several workers:

    uvicorn --factory ctaprod.server.asgi:create_app_from_env --workers 2 --port 8722

Settings come from ``CTAPROD_CONFIG`` and ``CTAPROD_*`` variables; the database must have been
migrated (``ctaprod db upgrade``) and identities bootstrapped (``ctaprod server`` once).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from ctaprod.core.settings import Settings, load_settings
from ctaprod.server.services import build_app


def create_app_from_env() -> FastAPI:
    """The app for one worker process; settings handed down by ``ctaprod server --workers``
    if present, else from the configuration file and environment."""
    handed = os.environ.get("CTAPROD_SETTINGS_JSON")
    settings = Settings.model_validate_json(handed) if handed else load_settings()
    return build_app(settings, migrate_db=not handed)
