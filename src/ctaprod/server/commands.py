"""Server-side commands (loaded lazily by the CLI): run the API server, agents, everything."""

from __future__ import annotations

import logging

from ctaprod.core.settings import Settings

log = logging.getLogger("ctaprod.server")


def run_server(settings: Settings, *, workers: int = 1) -> None:
    """Run the API server in the foreground (uvicorn)."""
    import uvicorn

    from ctaprod.server.services import build_services, ensure_identities

    services = build_services(settings)
    ensure_identities(services)
    from ctaprod.api.app import create_app

    app = create_app(services)
    if workers > 1:
        raise SystemExit("several workers: run `uvicorn --factory ctaprod.server.asgi:app`")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                access_log=False)
