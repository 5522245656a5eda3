"""Server-side commands (loaded lazily by the CLI): run the API server, agents, everything."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ctaprod.core.settings import Settings

log = logging.getLogger("ctaprod.server")
SETTINGS_ENV = "CTAPROD_SETTINGS_JSON"


def run_server(settings: Settings, *, workers: int = 1) -> None:
    """Run the API server in the foreground (uvicorn), with ``workers`` processes."""
    import os

    import uvicorn

    from ctaprod.server.services import build_services, first_start

    services = build_services(settings)  # migrates the database once, here
    announce_admin_token(first_start(services))
    if workers > 1:
        services.ctx.db.dispose()
        # Worker processes rebuild the same settings from this variable (server/asgi.py).
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run(
            "ctaprod.server.asgi:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level="info",
            access_log=False,
        )
        return
    from ctaprod.api.app import create_app

    uvicorn.run(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )


def announce_admin_token(path: Path | None) -> None:
    """Tell the operator where the first admin token is (the token itself stays in the file,
    out of the terminal's scrollback and of any log that captures stdout)."""
    if path is None:
        return
    print(
        f"ctaprod: new installation: the first admin token is in {path} (mode 0600, "
        "written once, never shown again).\n"
        f"ctaprod: use it with: export CTAPROD_TOKEN=$(cat {path}); ctaprod whoami",
        flush=True,
    )


def run_db_upgrade(settings: Settings) -> str | None:
    """Bring the database to the current schema and, on an empty one, create the default
    identities and the first admin token (see ``first_start``); returns the revision."""
    from ctaprod.db import migrate
    from ctaprod.server.services import build_services, first_start

    services = build_services(settings)
    try:
        announce_admin_token(first_start(services))
        return migrate.current(services.ctx.db)
    finally:
        services.ctx.db.dispose()


def pilot_work_root(settings: Settings) -> Path:
    """Where the pilots of ``ctaprod up`` run their jobs: next to the state directory, never
    in it (``<state_dir>-work``), so that no payload finds the server's key or database
    below its own directories."""
    state = settings.state_dir.absolute()
    return state.with_name(state.name + "-work")


def payload_isolation_warning() -> str | None:
    """Why the payloads of this machine's pilots cannot be isolated, or None if they can."""
    from ctaprod.pilot.sandbox import bwrap_works

    problem = bwrap_works("bwrap")
    if problem is None:
        return None
    return (
        f"payloads are NOT isolated ({problem}): a job can read what this server's user can "
        "read, its key and database included; install bubblewrap (apt-get install bubblewrap)"
    )


def embedded_settings(settings: Settings, slots: int) -> Settings:
    """The all-in-one defaults: a Local CE queue (its pilots work outside the state
    directory, see :func:`pilot_work_root`) and short agent intervals."""
    from ctaprod.core.settings import AgentSettings, QueueConfig

    changes: dict[str, object] = {}
    if not settings.queues:
        changes["queues"] = {
            "local": QueueConfig(
                ce_type="local",
                ce="localhost",
                site="LOCAL.localhost.org",
                max_waiting=slots,
                max_total=slots,
                max_empty_matches=2,
                options={
                    "slots": slots,
                    "pilot_work_dir": str(pilot_work_root(settings) / "local"),
                },
                # This machine is the site: how it runs the CTA software (or the stand-ins,
                # and how they behave) comes from the environment ctaprod up was started in.
                environment={
                    k: v
                    for k, v in os.environ.items()
                    if k.startswith(("CTAPROD_CTA_", "CTAPROD_STANDIN_"))
                },
            )
        }
    agents = dict(settings.agents)
    for name, interval in (
        ("pilot_factory", 3.0),
        ("pilot_status", 5.0),
        ("stalled_jobs", 15.0),
        ("job_cleaning", 3600.0),
        # One machine, small productions: steps follow each other within seconds.
        ("task_creation", 1.0),
        ("task_submission", 1.0),
        ("transformation_recovery", 5.0),
        ("production", 2.0),
    ):
        if "agents" in settings.model_fields_set and name in settings.agents:
            continue  # configured explicitly
        agents[name] = AgentSettings(interval=interval)
    changes["agents"] = agents
    return settings.model_copy(update=changes)


def run_up(settings: Settings, *, slots: int = 4) -> None:
    """Everything on one machine: API server, agents and a Local CE, on SQLite by default.

    On first start the admin token is stored (mode 0600) in the user's client config dir,
    so that ``ctaprod`` commands work right away.
    """
    import signal
    import threading

    import uvicorn

    from ctaprod.api.app import create_app
    from ctaprod.client import config as client_config
    from ctaprod.server.agents import run_agents, stop_local_pilots
    from ctaprod.server.services import build_services, first_start, secure_state_dir

    os.umask(0o077)  # the database, logs, pilot and storage files: owner-only
    settings = embedded_settings(settings, slots)
    secure_state_dir(settings)
    for queue in settings.queues.values():
        if queue.ce_type == "local" and queue.options.get("pilot_work_dir"):
            Path(str(queue.options["pilot_work_dir"])).mkdir(
                mode=0o700, parents=True, exist_ok=True
            )
    services = build_services(settings)
    first = first_start(services)
    admin_token = first.read_text().strip() if first is not None else None
    url = settings.server_url()
    token_file = client_config.config_dir() / "token"
    if admin_token is None and not token_file.exists():
        from datetime import timedelta

        from ctaprod.core.properties import TokenKind

        admin_token = services.tokens.issue(
            "admin",
            "ctao_admin",
            TokenKind.USER,
            timedelta(days=settings.user_token_days),
            "embedded admin token",
        ).token
    if admin_token is not None:
        where = client_config.save(url, admin_token)
        print(f"ctaprod: admin token saved in {where / 'token'} (mode 0600)")
    else:
        client_config.save(url, None)
    print(f"ctaprod: state in {settings.state_dir}, database {settings.db_url()}")
    print(f"ctaprod: API on {url} (OpenAPI at {url}/docs); Local CE with {slots} slots")
    warning = payload_isolation_warning()
    if warning is not None:
        log.warning("%s", warning)
        print(f"ctaprod: WARNING: {warning}", file=sys.stderr, flush=True)
    else:
        print("ctaprod: payloads run in a bubblewrap sandbox (job directory only)")

    stop = threading.Event()
    agents = threading.Thread(
        target=run_agents,
        name="agents",
        daemon=True,
        kwargs={
            "settings": settings,
            "names": None,
            "once": False,
            "replica": 0,
            "replicas": 1,
            "stop": stop,
            "services": services,
        },
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    agents.start()
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down, which would kill this process
    # before the agents and the local pilots are stopped below: receive them as no-ops.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        server.run()
    finally:
        # Stop the agents first (no new pilots), then the pilots this machine runs: they would
        # otherwise retry against the stopped server for many minutes.
        stop.set()
        agents.join(timeout=10)
        stop_local_pilots(services)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
