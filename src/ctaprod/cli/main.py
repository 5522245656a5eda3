"""The ``ctaprod`` command: global options, error handling and the command tree.

Everything here goes through :mod:`ctaprod.client`; the server-side commands (``server``,
``agents``, ``up``, ``db``) import :mod:`ctaprod.server` only when they run, so that this
module imports on a worker node without FastAPI, SQLAlchemy or uvicorn.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from ctaprod import __version__
from ctaprod.cli import (
    admin,
    dm,
    dm_data,
    dm_meta,
    job_files,
    jobs,
    pilots,
    prod,
    requests,
    se,
    server,
    trans,
)
from ctaprod.cli.common import CliState, client
from ctaprod.cli.output import describe_validation_error, emit, fmt, print_error, structured, table
from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.core.errors import CtaprodError

# Exit codes: 1 the server or the domain refused, 2 bad usage or local input, 3 no server.
EXIT_API = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def _os_error(exc: OSError) -> str:
    return f"{exc.strerror}: {exc.filename}" if exc.filename and exc.strerror else str(exc)


class CtaprodGroup(TyperGroup):
    """The root group: turns the errors a user can cause into one line and an exit code.

    Nested groups run inside the root's ``invoke``, so catching here covers every command.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            code, message = EXIT_API, str(exc)
        except ServerUnreachable as exc:
            code, message = EXIT_UNREACHABLE, f"{exc} (is the server running? check --url)"
        except CtaprodError as exc:
            code, message = EXIT_API, exc.message
        except FileNotFoundError as exc:
            code, message = EXIT_USAGE, _os_error(exc)
        except OSError as exc:  # permission denied, disk full... while writing outputs
            code, message = EXIT_API, _os_error(exc)
        except ValidationError as exc:
            code, message = EXIT_USAGE, f"invalid {exc.title}: {describe_validation_error(exc)}"
        print_error(message)
        raise typer.Exit(code)


app = typer.Typer(
    cls=CtaprodGroup,
    name="ctaprod",
    help="CTAO production system: submit and follow jobs, administer users, run the server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ctaprod {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Server URL (default: $CTAPROD_URL, else the saved one, else local)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Bearer token (default: $CTAPROD_TOKEN, else the saved one)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """CTAO production system: submit and follow jobs, administer users, run the server."""
    ctx.obj = CliState(url=url, token=token)


@app.command()
@structured
def whoami(ctx: typer.Context) -> None:
    """Show who the server thinks you are (user, group, properties)."""
    with client(ctx) as cli:
        me = cli.whoami()
    tbl = table("User", "Group", "Kind", "Properties")
    tbl.add_row(me.user, me.group, me.kind, fmt(me.properties))
    emit(me, tbl)


job_files.register(jobs.app)
app.add_typer(jobs.app, name="job")
app.add_typer(admin.app, name="admin")
app.add_typer(pilots.app, name="pilot")
dm_meta.register(dm.app)
dm_data.register(dm.app)
app.add_typer(dm.app, name="dm")
app.add_typer(se.app, name="se")
app.add_typer(requests.app, name="request")
app.add_typer(trans.app, name="trans")
app.add_typer(prod.app, name="prod")
server.register(app)


def main() -> None:
    """Entry point of the ``ctaprod`` script."""
    app(prog_name="ctaprod")


if __name__ == "__main__":
    main()
