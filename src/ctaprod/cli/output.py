"""Terminal output of the CLI: consoles, tables, job-ID ranges and value formatting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from rich.console import Console, RenderableType
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


def stdout() -> Console:
    """A console on the current ``sys.stdout`` (looked up at each call: tests swap it)."""
    return Console(soft_wrap=False)


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
