"""Server-side commands: ``server``, ``agents``, ``up``, ``db upgrade``, ``demo``.

They import :mod:`ctaprod.server` (FastAPI, SQLAlchemy, uvicorn) only when they run, so that
the rest of the CLI works on a worker node that has the light install only.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from ctaprod.cli.output import describe_validation_error, print_error, say

if TYPE_CHECKING:
    from ctaprod.core.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NEEDS_SERVER = "this command needs the server install: pip install 'ctaprod[server]'"
EXIT_USAGE = 2

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        exists=True,
        dir_okay=False,
        help="Settings file, TOML (default: $CTAPROD_CONFIG).",
    ),
]
PortOpt = Annotated[int | None, typer.Option(min=0, max=65535, help="Port to listen on.")]
StateDirOpt = Annotated[
    Path | None, typer.Option(file_okay=False, help="State directory (SQLite DB, sandboxes).")
]


@contextmanager
def server_install() -> Iterator[None]:
    """Turn a missing server dependency into a one-line hint and exit code 2."""
    try:
        yield
    except ImportError as exc:
        print_error(f"{NEEDS_SERVER} ({exc})")
        raise typer.Exit(EXIT_USAGE) from None


def load(config: Path | None, **overrides: Any) -> Settings:
    """Settings from the file and environment; options given on the command line win."""
    from ctaprod.core.settings import load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print_error(f"invalid settings: {describe_validation_error(exc)}")
        raise typer.Exit(EXIT_USAGE) from None


def server(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: PortOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (uvicorn workers).")] = 1,
) -> None:
    """Run the API server in the foreground."""
    settings = load(config, host=host, port=port)
    with server_install():
        from ctaprod.server.commands import run_server

        run_server(settings, workers=workers)


def agents(
    config: ConfigOpt = None,
    name: Annotated[
        list[str] | None, typer.Option("--name", "-n", help="Run only this agent (repeat).")
    ] = None,
    once: Annotated[
        bool,
        typer.Option(help="Run one cycle of each agent, then exit (1 if a cycle failed)."),
    ] = False,
    replica: Annotated[
        int, typer.Option(min=0, help="This replica's id (0-based, unique per agent).")
    ] = 0,
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            help="How many replica ids there are; the work is shared among the live ones.",
        ),
    ] = 1,
) -> None:
    """Run the agents (pilot factory, stalled jobs, cleaning...) until stopped.

    Replicas of an agent share its work among those alive (liveness beats in the database):
    when one dies, the others take over its share."""
    if replica >= replicas:
        raise typer.BadParameter(f"--replica {replica} must be below --replicas {replicas}")
    settings = load(config)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        # The first signal asks the agents to finish their cycle; a second one kills.
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    with server_install():
        from ctaprod.server.agents import AgentCycleError, run_agents

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
        try:
            run_agents(
                settings,
                name or None,
                once=once,
                replica=replica,
                replicas=replicas,
                stop=stop,
                cancel_local_pilots=True,  # they would outlive this process otherwise
            )
        except AgentCycleError as exc:
            print_error(f"agent cycle failed: {exc}")
            raise typer.Exit(1) from None


def up(
    config: ConfigOpt = None,
    port: PortOpt = None,
    state_dir: StateDirOpt = None,
    slots: Annotated[int, typer.Option(min=1, help="Jobs the Local CE runs at once.")] = 4,
) -> None:
    """Run everything on this machine: API server, agents and a Local CE (SQLite)."""
    settings = load(config, port=port, state_dir=state_dir)
    with server_install():
        from ctaprod.server.commands import run_up

        run_up(settings, slots=slots)


db_app = typer.Typer(help="Database administration (server install).", no_args_is_help=True)


@db_app.command()
def upgrade(config: ConfigOpt = None) -> None:
    """Create the tables or migrate them to the current schema."""
    settings = load(config)
    if not settings.database_url:  # SQLite in the state directory
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    with server_install():
        from ctaprod.server.commands import run_db_upgrade

        say(f"Database schema at revision {run_db_upgrade(settings)}")


def demo(
    state_dir: StateDirOpt = None,
    mc_tasks: Annotated[int, typer.Option(min=1, help="MC runs of the simulation step.")] = 20,
    chaos: Annotated[
        bool,
        typer.Option(
            help="Payload failures, a pilot SIGKILLed, the SE banned for a while, the server "
            "and agents SIGKILLed and restarted: the production must still end valid."
        ),
    ] = False,
    payload_seconds: Annotated[
        float, typer.Option(min=0, help="Time each stand-in payload takes.")
    ] = 0.5,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the demo server.")] = 8723,
    slots: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 4,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 600,
    keep: Annotated[bool, typer.Option(help="Leave the server running afterwards.")] = False,
) -> None:
    """Start `ctaprod up`, run a 3-step CTA production (MC simulation, ctapipe processing,
    merging) from a CTADIRAC YAML to the end, and validate it."""
    directory = state_dir or Path(tempfile.mkdtemp(prefix="ctaprod-demo-"))
    with server_install():
        from ctaprod.server.prod_demo import run_production_demo

        raise typer.Exit(
            run_production_demo(
                directory,
                mc_tasks=mc_tasks,
                port=port,
                slots=slots,
                timeout=timeout,
                keep=keep,
                chaos=chaos,
                payload_seconds=payload_seconds,
            )
        )


def demo_jobs(
    state_dir: StateDirOpt = None,
    jobs: Annotated[int, typer.Option(min=1, help="Parametric jobs to submit.")] = 200,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the demo server.")] = 8723,
    slots: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 4,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 600,
    keep: Annotated[bool, typer.Option(help="Leave the server running afterwards.")] = False,
) -> None:
    """Start `ctaprod up`, run a parametric DIRAC JDL job end to end and fetch its output."""
    directory = state_dir or Path(tempfile.mkdtemp(prefix="ctaprod-demo-"))
    with server_install():
        from ctaprod.server.demo import run_demo

        raise typer.Exit(run_demo(directory, jobs, port, slots, timeout, keep))


def register(app: typer.Typer) -> None:
    """Add the server-side commands to the top-level ``ctaprod`` command."""
    panel = "Server side (server install)"
    for command in (server, agents, up, demo):
        app.command(rich_help_panel=panel)(command)
    app.command("demo-jobs", rich_help_panel=panel)(demo_jobs)
    app.add_typer(db_app, name="db", rich_help_panel=panel)
