"""``ctaprod request``: requests: the failover operations and their status."""

from __future__ import annotations

import typer

app = typer.Typer(help="Requests: the failover operations and their status.", no_args_is_help=True)
