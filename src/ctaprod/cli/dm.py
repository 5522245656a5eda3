"""``ctaprod dm``: data management: the file catalog, transfers, metadata, datasets."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Data management: the file catalog, transfers, metadata, datasets.", no_args_is_help=True
)
