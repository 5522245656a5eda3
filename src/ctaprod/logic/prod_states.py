"""The door of productions: every status change of a production goes through
:func:`change_productions` (the machine is :data:`ctaprod.core.prod_states.PRODUCTION_MACHINE`).

Rows read under lock, each step checked by the machine, a conditional UPDATE, and the
machine's ``log`` hook: every change is written to the production log (who, what, when).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Connection, RowMapping

from ctaprod.core.prod_states import PRODUCTION_MACHINE, ProductionStatus
from ctaprod.core.statemachine import Change, Transition, TransitionResult
from ctaprod.db.statechange import ConditionalWriter
from ctaprod.db.tables import productions
from ctaprod.logic.context import Context
from ctaprod.logic.door import Door, HookContext, change_states

PS = ProductionStatus
_PRODS = ConditionalWriter(productions, "prod_id")


def production_door(ctx: Context) -> Door[ProductionStatus, RowMapping]:
    def log(
        conn: Connection,
        steps: Sequence[Transition[ProductionStatus]],
        h: HookContext[RowMapping],
    ) -> None:
        ctx.prods.add_log(
            conn,
            (
                (
                    t.ident,
                    h.source,
                    "status",
                    f"{t.old.value} -> {t.new.value}" + (f": {t.reason}" if t.reason else ""),
                )
                for t in steps
            ),
            h.now,
        )

    return Door(
        PRODUCTION_MACHINE,
        read=ctx.prods.read_locked,
        status=lambda row: PS(row["status"]),
        write=_PRODS.write_transitions,
        after={"log": log},
    )


def change_productions(
    ctx: Context,
    conn: Connection,
    ids: Sequence[int],
    decide: Callable[[RowMapping], Sequence[Change[ProductionStatus]] | None],
    *,
    source: str,
    strict: bool = True,
    known: Mapping[int, RowMapping] | None = None,
) -> TransitionResult[ProductionStatus, RowMapping]:
    """Change productions' status through their machine (module docstring)."""
    return change_states(
        production_door(ctx),
        conn,
        ids,
        decide,
        source=source,
        now=ctx.clock(),
        strict=strict,
        known=known,
    )
