"""Build the FastAPI application around a set of services."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ctaprod import __version__
from ctaprod.api import errors
from ctaprod.api.deps import Services
from ctaprod.api.routers import (
    admin,
    catalog,
    data,
    jobs,
    metadata,
    requests,
    runtime,
    sandboxes,
    storage,
)


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}_{route.name}"


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="ctaprod",
        version=__version__,
        description="CTAO production system: workload and data management API",
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    errors.install(app)
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

    @app.get("/api/health", tags=["health"], operation_id="health_check")
    def health() -> dict[str, str]:
        with services.ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__}

    return app
