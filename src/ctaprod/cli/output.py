"""Terminal output of the CLI: consoles, tables, JSON, job-ID ranges and value formatting.

Two output rules hold for every command, here rather than in each command:

- ``--json`` (or ``-o json``) on list and show commands (those decorated with
  :func:`structured`) prints the API's models as JSON instead of tables (:func:`emit`): the
  keys are the field names of the models in ``ctaprod.core`` (their aliases where they have
  one), as the REST API returns them.
- When stdout is not a terminal, tables are plain text: a header line (when the table has
  one), then one line per row, cells separated by a tab, no box drawing and no colour, so that
  ``cut -f`` and ``awk -F'\t'`` read them. Table titles go to stderr.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from rich.console import Console, RenderableType
from rich.rule import Rule
from rich.style import StyleType
from rich.table import Table
from rich.text import Text

from ctaprod.core.job_states import JobStatus

STATUS_STYLES = {
    JobStatus.DONE: "green",
    JobStatus.FAILED: "red",
    JobStatus.KILLED: "magenta",
    JobStatus.DELETED: "dim",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETING: "cyan",
    JobStatus.COMPLETED: "cyan",
    JobStatus.MATCHED: "blue",
    JobStatus.WAITING: "yellow",
    JobStatus.STALLED: "bold red",
    JobStatus.RESCHEDULED: "yellow",
}
NUMERIC = frozenset({"ID", "Jobs", "Total", "Share", "Jobs done", "Bytes"})
STATUS_ORDER = {status: i for i, status in enumerate(JobStatus)}


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (the API's models).")
]
OutputOpt = Annotated[
    OutputFormat | None,
    typer.Option("--output", "-o", case_sensitive=False, help="Output format: table or json."),
]
_JSON: ContextVar[bool] = ContextVar("ctaprod_cli_json", default=False)
F = TypeVar("F", bound=Callable[..., Any])


def structured(func: F) -> F:
    """Give a list or show command the ``--json`` and ``-o/--output`` options.

    The command hands its result to :func:`emit`, which prints JSON or the tables.
    """
    sig = inspect.signature(func, eval_str=True)
    extra = [
        inspect.Parameter(
            "json_", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonFlag
        ),
        inspect.Parameter(
            "output_format", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OutputOpt
        ),
    ]

    @functools.wraps(func)
    def wrapper(
        *args: Any, json_: bool = False, output_format: OutputFormat | None = None, **kwargs: Any
    ) -> Any:
        token = _JSON.set(json_ or output_format is OutputFormat.JSON)
        try:
            return func(*args, **kwargs)
        finally:
            _JSON.reset(token)

    params = [*sig.parameters.values(), *extra]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


def json_wanted() -> bool:
    """True inside a command run with ``--json`` or ``-o json``."""
    return _JSON.get()


def to_json(data: Any) -> str:
    """``data`` (models, lists and dicts of them) as the API would send it."""
    return json.dumps(to_jsonable_python(data, by_alias=True), indent=2, ensure_ascii=False)


def emit(data: Any, *renderables: RenderableType) -> None:
    """Print ``data`` as JSON when asked for, else the ``renderables`` (tables...)."""
    if json_wanted():
        typer.echo(to_json(data))
        return
    out = stdout()
    for renderable in renderables:
        out.print(renderable)


def emit_stream(items: Iterable[Any], line: Callable[[Any], str]) -> None:
    """Print streamed items: a JSON array written as they come, else ``line(item)`` each."""
    if not json_wanted():
        for item in items:
            typer.echo(line(item))
        return
    first = True
    for item in items:
        typer.echo(
            ("[\n  " if first else ",\n  ")
            + json.dumps(to_jsonable_python(item, by_alias=True), ensure_ascii=False),
            nl=False,
        )
        first = False
    typer.echo("[]" if first else "\n]")


def _plain(cell: Any) -> str:
    text = cell.plain if isinstance(cell, Text) else "" if cell is None else str(cell)
    return " ".join(text.split("\t")).replace("\r", " ").replace("\n", " ")


def plain_lines(tbl: Table) -> list[str]:
    """A table as tab-separated lines: the header (if shown), then one line per row."""
    columns = tbl.columns
    lines = ["\t".join(_plain(c.header) for c in columns)] if tbl.show_header else []
    cells = [list(c.cells) for c in columns]
    for i in range(tbl.row_count):
        lines.append("\t".join(_plain(col[i]) for col in cells))
    return lines


class Stdout(Console):
    """The standard output: Rich on a terminal, plain tab-separated tables otherwise."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self.is_terminal or not any(isinstance(o, (Table, Rule)) for o in objects):
            super().print(*objects, **kwargs)
            return
        for obj in objects:
            if isinstance(obj, Table):
                if obj.title:
                    print_note(_plain(obj.title))
                for line in plain_lines(obj):
                    self.file.write(line + "\n")
            elif isinstance(obj, Rule):
                self.file.write(f"--- {_plain(obj.title)}\n")
            else:
                super().print(obj, **kwargs)
        self.file.flush()


def stdout() -> Console:
    """A console on the current ``sys.stdout`` (looked up at each call: tests swap it)."""
    return Stdout(soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=False)


def print_error(message: str) -> None:
    """One red ``Error: ...`` line on stderr, never wrapped, markup in ``message`` ignored."""
    stderr().print(Text(f"Error: {message}", style="red"), soft_wrap=True)


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as ``where: what`` (plus how many others)."""
    errors = exc.errors()
    if not errors:
        return str(exc)
    where = ".".join(str(p) for p in errors[0].get("loc", ()))
    text = f"{where}: {errors[0]['msg']}" if where else str(errors[0]["msg"])
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return text


def print_warning(message: str) -> None:
    stderr().print(Text(f"Warning: {message}", style="yellow"), soft_wrap=True)


def print_note(message: str) -> None:
    """A remark for the user on stderr, so that stdout stays parseable."""
    stderr().print(Text(message, style="dim"), soft_wrap=True)


class PlainTable(Table):
    """A table whose string cells are plain text: a job named ``[x]`` is not Rich markup."""

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = [Text(r) if isinstance(r, str) else r for r in renderables]
        super().add_row(*cells, style=style, end_section=end_section)


def say(message: str) -> None:
    """A plain line on stdout (no markup, no highlighting)."""
    stdout().print(message, markup=False, highlight=False, soft_wrap=True)


def _title(title: str | None) -> Text | None:
    return Text(title, style="bold") if title else None


def table(*columns: str, title: str | None = None) -> Table:
    tbl = PlainTable(title=_title(title), header_style="bold", title_justify="left")
    for name in columns:
        tbl.add_column(name, justify="right" if name in NUMERIC else "left", overflow="fold")
    return tbl


def key_value_table(rows: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    tbl = PlainTable(title=_title(title), show_header=False, title_justify="left")
    tbl.add_column("key", style="bold")
    tbl.add_column("value", overflow="fold")
    for key, value in rows:
        tbl.add_row(key, value if isinstance(value, Text) else fmt(value))
    return tbl


def fmt(value: Any) -> str:
    """A value as a table cell: times in local time, lists comma-separated, None empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _job_status(value: str) -> JobStatus | None:
    try:
        return JobStatus(value)
    except ValueError:
        return None


def status_text(status: str) -> Text:
    known = _job_status(status)
    return Text(str(status), style=STATUS_STYLES.get(known, "") if known else "")


def status_rank(status: str) -> tuple[int, str]:
    """Sort key: the order of the state machine, unknown names last."""
    known = _job_status(status)
    return (STATUS_ORDER[known] if known else len(STATUS_ORDER), str(status))


def count_by_status(statuses: Iterable[str]) -> str:
    """``3 Done, 1 Failed`` in the order of the state machine."""
    counts = Counter(str(s) for s in statuses)
    return ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=status_rank))


def compact_ids(ids: Iterable[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``1-3,5,7-8`` (sorted, duplicates dropped)."""
    ordered = sorted(set(ids))
    if not ordered:
        return ""
    parts: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(parts)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
