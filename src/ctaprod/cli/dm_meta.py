"""``ctaprod dm meta | find | dataset``: metadata, queries and datasets."""

from __future__ import annotations

import typer


def register(dm: typer.Typer) -> None:
    """Add the metadata, query and dataset commands to ``ctaprod dm``."""
    del dm
