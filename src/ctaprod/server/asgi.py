"""ASGI factory for running the API under uvicorn/gunicorn with several workers:

    uvicorn --factory ctaprod.server.asgi:create_app_from_env --workers 2 --port 8722

Settings come from ``CTAPROD_CONFIG`` and ``CTAPROD_*`` variables; the database must have been
migrated (``ctaprod db upgrade``) and identities bootstrapped (``ctaprod server`` once).
"""

from __future__ import annotations

from fastapi import FastAPI

from ctaprod.core.settings import load_settings
from ctaprod.server.services import build_app


def create_app_from_env() -> FastAPI:
    return build_app(load_settings())
