"""Build the FastAPI application around a set of services."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ctaprod import __version__
from ctaprod.api import errors
from ctaprod.api.deps import Services
from ctaprod.api.limits import RequestLimits, UploadSlots
from ctaprod.api.routers import (
    admin,
    catalog,
    data,
    jobs,
    metadata,
    productions,
    requests,
    runtime,
    sandboxes,
    storage,
    transformations,
)
from ctaprod.core.schemas import ErrorBody
from ctaprod.logic import liveness

# The error answers any route may give, each with the ErrorBody schema (declared centrally so
# that a new route cannot forget one).
ERROR_RESPONSES = {
    400: "Malformed request",
    401: "Missing, invalid, expired or revoked token",
    403: "Not allowed for this identity",
    404: "No such object (or not visible to you)",
    408: "Request body too slow",
    409: "Conflict with the object's current state",
    413: "Request body or content over its limit",
    422: "Invalid input (a value out of range, too long, not allowed...)",
    503: "A dependency (database, storage) is unavailable: retry later",
}


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}_{route.name}"


log = logging.getLogger("ctaprod.api")


def _beat_liveness(services: Services, stop: threading.Event) -> None:
    """Write this process's liveness row every ``liveness.server_beat_seconds`` until stopped:
    the stalled-job agent does not count job silence across a time no server was up."""
    ctx = services.ctx
    instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    up_since = None
    while True:
        try:
            if up_since is None:
                up_since = liveness.server_started(ctx, instance)
            else:
                liveness.server_beat(ctx, instance, up_since)
        except Exception:  # the database is away: try again at the next beat
            log.exception("cannot record the server's liveness")
        if stop.wait(ctx.settings.liveness.server_beat_seconds):
            return


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    stop = threading.Event()
    beat = threading.Thread(
        target=_beat_liveness, args=(app.state.services, stop), name="liveness", daemon=True
    )
    beat.start()
    try:
        yield
    finally:
        stop.set()
        app.state.services.batcher.close()
        beat.join(timeout=10)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="ctaprod",
        version=__version__,
        description="CTAO production system: workload and data management API",
        generate_unique_id_function=_operation_id,
        lifespan=_lifespan,
    )
    app.state.services = services
    settings = services.ctx.settings
    app.state.upload_slots = UploadSlots(settings.api.upload_threads)
    app.add_middleware(RequestLimits, settings=settings)
    local_storage = [
        se.base_path
        for se in settings.storage_elements.values()
        if se.plugin == "posix" and se.base_path.startswith("/")
    ]
    errors.install(app, hidden_paths=[settings.state_dir, *local_storage])
    # Runtime routes first: their literal paths (/api/jobs/heartbeats, /api/jobs/status) must
    # not be taken for /api/jobs/{job_id}.
    app.include_router(runtime.router)
    app.include_router(jobs.router)
    app.include_router(sandboxes.router)
    app.include_router(admin.auth_router)
    app.include_router(admin.router)
    app.include_router(admin.sites_router)
    app.include_router(catalog.router)
    app.include_router(metadata.router)
    app.include_router(storage.router)
    app.include_router(data.router)
    app.include_router(requests.router)
    app.include_router(transformations.router)
    app.include_router(productions.router)

    @app.get("/api/health", tags=["health"], operation_id="health_check")
    def health() -> dict[str, str]:
        with services.ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__}

    _declare_errors(app)
    return app


def _declare_errors(app: FastAPI) -> None:
    """Every operation of the OpenAPI declares the error answers, with the real body."""

    def openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_RESPONSES.items():
                    responses[str(status)] = {
                        "description": description,
                        "content": {"application/json": {"schema": ref}},
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
