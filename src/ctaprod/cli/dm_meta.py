"""``ctaprod dm meta | find | dataset``: metadata, queries and datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ctaprod.cli.common import client
from ctaprod.cli.output import (
    emit,
    emit_stream,
    fmt,
    json_wanted,
    key_value_table,
    plural,
    say,
    structured,
    table,
)
from ctaprod.core.metadata import DatasetInfo

meta_app = typer.Typer(help="Metadata fields and values.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets: named metadata queries.", no_args_is_help=True)

QueryArgs = Annotated[
    list[str] | None,
    typer.Argument(
        help="Query, e.g. particle=gamma thetaP>=20 'site in (A,B)'", show_default=False
    ),
]
FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Read the query from a file (dict, JSON, YAML or text)"),
]


def _query(words: list[str] | None, file: Path | None) -> str | dict[str, Any]:
    """The query of the command line: its words, or the text of ``--file``."""
    if file is not None:
        if words:
            raise typer.BadParameter("give a query or --file, not both")
        try:
            text = file.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror}") from None
        if not text.lstrip().startswith("{"):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                data = None
            if isinstance(data, dict):
                return data
        return text
    return " ".join(words or [])


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not key=value")
        out[key.strip()] = value
    return out


def _show_view(view: Any) -> None:
    tbl = table("Field", "Value", "Type", "Origin", title=f"{view.kind} {view.path}")
    for value in view.effective:
        origin = "(own)" if value.origin == view.path else value.origin
        tbl.add_row(value.field, fmt(value.value), value.type.value, origin)
    emit(view, tbl)


@meta_app.command("set")
def meta_set(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Directory or file LFN")],
    values: Annotated[list[str], typer.Argument(help="key=value pairs", show_default=False)],
) -> None:
    """Set metadata on a directory (inherited below it) or a file."""
    with client(ctx) as cli:
        _show_view(cli.set_meta(path, _pairs(values)))


@meta_app.command("unset")
def meta_unset(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Directory or file LFN")],
    fields: Annotated[list[str], typer.Argument(help="Field names", show_default=False)],
) -> None:
    """Remove own metadata values of a directory or a file."""
    with client(ctx) as cli:
        _show_view(cli.unset_meta(path, fields))


@meta_app.command("get")
@structured
def meta_get(
    ctx: typer.Context, path: Annotated[str, typer.Argument(help="Directory or file LFN")]
) -> None:
    """Effective metadata of a directory or a file, with where each value is set."""
    with client(ctx) as cli:
        _show_view(cli.get_meta(path))


@meta_app.command("fields")
@structured
def meta_fields(ctx: typer.Context) -> None:
    """The declared metadata fields."""
    with client(ctx) as cli:
        fields = cli.meta_fields()
    tbl = table("Name", "Type", "Description")
    for field in fields:
        tbl.add_row(field.name, field.type.value, field.description)
    emit(fields, tbl)


@meta_app.command("add-field")
def meta_add_field(
    ctx: typer.Context,
    name: str,
    ftype: Annotated[str, typer.Argument(metavar="TYPE", help="int, float, string or datetime")],
    description: Annotated[str, typer.Option(help="What the field means")] = "",
) -> None:
    """Declare a metadata field (ProductionManagement)."""
    with client(ctx) as cli:
        field = cli.add_meta_field(name, ftype, description)
    say(f"Declared {field.name} ({field.type.value})")


@meta_app.command("rm-field")
def meta_rm_field(ctx: typer.Context, name: str) -> None:
    """Remove a metadata field that nothing uses."""
    with client(ctx) as cli:
        cli.remove_meta_field(name)
    say(f"Removed {name}")


@structured
def find(
    ctx: typer.Context,
    query: QueryArgs = None,
    file: FileOpt = None,
    path: Annotated[str | None, typer.Option(help="Only under this directory")] = None,
    count: Annotated[bool, typer.Option("--count", help="Print the count and size")] = False,
) -> None:
    """Find files by metadata: prints their LFNs as they come (or --count)."""
    q = _query(query, file)
    with client(ctx) as cli:
        if count:
            result = cli.count_files(q, path)
            if json_wanted():
                emit(result)
            else:
                say(f"{plural(result.count, 'file')}, {result.total_size} bytes")
            return
        emit_stream(cli.find_lfns(q, path), str)


def _dataset_table(items: list[DatasetInfo]) -> None:
    tbl = table("Name", "Status", "Owner", "Files", "Bytes", "Query")
    for d in items:
        tbl.add_row(d.name, d.status.value, d.owner, fmt(d.file_count), fmt(d.total_size), d.query)
    emit(items, tbl)


def _dataset_detail(d: DatasetInfo) -> None:
    rows = [
        ("Name", d.name), ("Status", d.status.value), ("Owner", f"{d.owner} ({d.owner_group})"),
        ("Query", d.query), ("Description", d.description), ("Created", d.created),
        ("Frozen at", d.frozen_at), ("Files", d.file_count), ("Total size", d.total_size),
    ]  # fmt: skip
    emit(d, key_value_table(rows))


@dataset_app.command("create")
def dataset_create(
    ctx: typer.Context,
    name: str,
    query: QueryArgs = None,
    file: FileOpt = None,
    frozen: Annotated[bool, typer.Option("--frozen", help="Freeze the file list now")] = False,
    description: Annotated[str, typer.Option(help="What the dataset is")] = "",
) -> None:
    """Save a metadata query as a dataset."""
    q = _query(query, file)
    with client(ctx) as cli:
        _dataset_detail(cli.create_dataset(name, q, description=description, frozen=frozen))


@dataset_app.command("list")
@structured
def dataset_list(ctx: typer.Context) -> None:
    """All datasets (file counts of frozen ones)."""
    with client(ctx) as cli:
        _dataset_table(cli.datasets())


@dataset_app.command("show")
@structured
def dataset_show(ctx: typer.Context, name: str) -> None:
    """A dataset with its file count and total size."""
    with client(ctx) as cli:
        _dataset_detail(cli.dataset(name))


@dataset_app.command("files")
@structured
def dataset_files(ctx: typer.Context, name: str) -> None:
    """The LFNs of a dataset, streamed."""
    with client(ctx) as cli:
        emit_stream(cli.dataset_files(name), str)


@dataset_app.command("freeze")
def dataset_freeze(ctx: typer.Context, name: str) -> None:
    """Fix the dataset's file list as it is now."""
    with client(ctx) as cli:
        _dataset_detail(cli.freeze_dataset(name))


@dataset_app.command("delete")
def dataset_delete(ctx: typer.Context, name: str) -> None:
    """Delete a dataset (not its files)."""
    with client(ctx) as cli:
        cli.delete_dataset(name)
    say(f"Deleted dataset {name}")


def register(dm: typer.Typer) -> None:
    """Add the metadata, query and dataset commands to ``ctaprod dm``."""
    dm.add_typer(meta_app, name="meta")
    dm.add_typer(dataset_app, name="dataset")
    dm.command("find")(find)
