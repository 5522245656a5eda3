"""``ctaprod se``: storage elements: list, ban and allow."""

from __future__ import annotations

import typer

app = typer.Typer(help="Storage elements: list, ban and allow.", no_args_is_help=True)
