"""What the commands share: the global options, the client they open, job-ID arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from ctaprod.client.config import ClientConfig
from ctaprod.client.http import Client

# A command line may name at most this many jobs (ranges included).
MAX_IDS = 1_000_000

IdsArg = Annotated[
    list[str],
    typer.Argument(help="Job IDs: 12, 10-20 or 1,5,7-9", show_default=False, metavar="ID"),
]


@dataclass(frozen=True)
class CliState:
    """The global options (``--url``, ``--token``); unset ones come from ClientConfig."""

    url: str | None = None
    token: str | None = None

    def config(self) -> ClientConfig:
        loaded = ClientConfig.load()
        return ClientConfig(
            url=(self.url or loaded.url).rstrip("/"), token=self.token or loaded.token
        )


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def client(ctx: typer.Context) -> Client:
    """A client on the configured server; use it as a context manager."""
    return Client.from_config(state(ctx).config())


def parse_ids(values: list[str]) -> list[int]:
    """Job IDs from ``12``, ``10-20`` and comma-separated lists, in order, without repeats."""
    out: dict[int, None] = {}
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            first, sep, last = part.partition("-")
            try:
                lo = int(first)
                hi = int(last) if sep else lo
            except ValueError:
                raise typer.BadParameter(
                    f"{part!r} is not a job ID or a range like 10-20"
                ) from None
            if lo < 1 or hi < lo:
                raise typer.BadParameter(f"{part!r}: job IDs are positive, ranges go upwards")
            if len(out) + hi - lo + 1 > MAX_IDS:
                raise typer.BadParameter(f"more than {MAX_IDS} job IDs")
            out.update(dict.fromkeys(range(lo, hi + 1)))
    if not out:
        raise typer.BadParameter("no job ID given")
    return list(out)
