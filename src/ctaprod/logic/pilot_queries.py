"""What operators read about pilots: search, one pilot, its log."""

from __future__ import annotations

from collections.abc import Sequence

from ctaprod.core.errors import NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.core.properties import Property
from ctaprod.core.schemas import PilotInfo
from ctaprod.logic.context import Context

READERS = (Property.OPERATOR, Property.ADMIN, Property.JOB_ADMINISTRATOR)


def search_pilots(
    ctx: Context,
    ident: Identity,
    statuses: Sequence[PilotStatus],
    site: str | None,
    ce: str | None,
    limit: int,
    after: int | None,
) -> list[PilotInfo]:
    """One page of pilots (by ID, after the cursor ``after``) for operators."""
    ident.require(*READERS)
    with ctx.db.read() as conn:
        rows = ctx.pilots.search(
            conn, statuses=[s.value for s in statuses], site=site, ce=ce, limit=limit, after=after
        )
    return [PilotInfo.model_validate(dict(r)) for r in rows]


def get_pilot(ctx: Context, ident: Identity, pilot_id: int) -> PilotInfo:
    """One pilot for operators; NotFound if there is none."""
    ident.require(*READERS)
    with ctx.db.read() as conn:
        row = ctx.pilots.get(conn, pilot_id)
    if row is None:
        raise NotFound(f"no pilot {pilot_id}")
    return PilotInfo.model_validate(dict(row))


def pilot_log(ctx: Context, ident: Identity, pilot_id: int) -> str:
    """The pilot's log as it uploaded it (or as its batch system kept it)."""
    ident.require(*READERS)
    with ctx.db.read() as conn:
        text = ctx.pilots.log(conn, pilot_id)
    if text is None:
        raise NotFound(f"no log for pilot {pilot_id}")
    return text
