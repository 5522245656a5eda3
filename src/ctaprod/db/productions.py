"""Productions, their steps and log (SQLAlchemy Core).

Bulk-first; the caller owns the transaction; methods never commit. Status changes go through
the door of ``logic.prod_states`` (the locked read below, the conditional UPDATEs of
``db.statechange``); this module writes new rows, the log and the validation outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from ctaprod.db.tables import (
    catalog_events,
    event_cursors,
    jobs,
    production_log,
    production_steps,
    productions,
    trans_dir_scans,
    trans_tasks,
)

P = productions.c
S = production_steps.c
Rows = dict[int, RowMapping]


@dataclass(frozen=True)
class NewStep:
    """A step to record: its id and name, its creation order, its transformation, parents."""

    step_id: str
    step_name: str
    position: int
    trans_id: int
    parents: Sequence[str] = ()


class ProductionDB:
    """Tables of the production system."""

    def __init__(self, for_update: bool) -> None:
        self.for_update = for_update

    def insert(self, conn: Connection, row: Mapping[str, Any]) -> int:
        """A new production; IntegrityError if the name is taken."""
        res = conn.execute(insert(productions).returning(P.prod_id), [dict(row)])
        return int(res.scalar_one())

    def add_steps(self, conn: Connection, prod_id: int, steps: Sequence[NewStep]) -> None:
        """Record the steps of a production (one INSERT)."""
        rows = [
            {
                "prod_id": prod_id,
                "step_id": s.step_id,
                "step_name": s.step_name,
                "position": s.position,
                "trans_id": s.trans_id,
                "parents": json.dumps(list(s.parents)),
            }
            for s in steps
        ]
        if rows:
            conn.execute(insert(production_steps), rows)

    def get(self, conn: Connection, prod_id: int) -> RowMapping | None:
        return conn.execute(select(productions).where(P.prod_id == prod_id)).mappings().first()

    def by_name(self, conn: Connection, name: str) -> RowMapping | None:
        return conn.execute(select(productions).where(P.name == name)).mappings().first()

    def read_locked(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Rows of these productions, locked for update where the engine has locks."""
        stmt = select(productions).where(P.prod_id.in_(sorted(set(ids)))).order_by(P.prod_id)
        if self.for_update:
            stmt = stmt.with_for_update()
        return {int(r["prod_id"]): r for r in conn.execute(stmt).mappings()}

    def search(
        self,
        conn: Connection,
        *,
        statuses: Sequence[str] = (),
        owner: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[RowMapping]:
        stmt = select(productions).where(P.prod_id > after)
        if statuses:
            stmt = stmt.where(P.status.in_(list(statuses)))
        if owner is not None:
            stmt = stmt.where(P.owner == owner)
        return list(conn.execute(stmt.order_by(P.prod_id).limit(limit)).mappings())

    def ids_in(self, conn: Connection, statuses: Sequence[str]) -> list[int]:
        stmt = select(P.prod_id).where(P.status.in_(list(statuses))).order_by(P.prod_id)
        return [int(r[0]) for r in conn.execute(stmt)]

    def steps(self, conn: Connection, prod_ids: Sequence[int]) -> dict[int, list[RowMapping]]:
        """The steps of each production, in creation (topological) order."""
        out: dict[int, list[RowMapping]] = {p: [] for p in prod_ids}
        if not prod_ids:
            return out
        stmt = (
            select(production_steps)
            .where(S.prod_id.in_(sorted(set(prod_ids))))
            .order_by(S.prod_id, S.position)
        )
        for row in conn.execute(stmt).mappings():
            out[int(row["prod_id"])].append(row)
        return out

    def set_fields(self, conn: Connection, prod_id: int, now: datetime, **values: Any) -> None:
        """Write non-status columns (the validation outcome)."""
        conn.execute(
            update(productions).where(P.prod_id == prod_id).values(last_update=now, **values)
        )

    def add_log(
        self, conn: Connection, entries: Iterable[tuple[int, str, str, str]], now: datetime
    ) -> None:
        """Append ``(prod_id, author, action, message)`` entries."""
        rows = [
            {"prod_id": p, "author": a[:128], "action": act[:32], "message": m[:2048], "time": now}
            for p, a, act, m in entries
        ]
        if rows:
            conn.execute(insert(production_log), rows)

    def log(self, conn: Connection, prod_id: int, limit: int = 1000) -> list[RowMapping]:
        c = production_log.c
        stmt = select(production_log).where(c.prod_id == prod_id).order_by(c.id.desc())
        return list(reversed(list(conn.execute(stmt.limit(limit)).mappings())))

    # --- what the live view and the agent read ------------------------------------------
    def job_counts(self, conn: Connection, trans_id: int) -> dict[str, int]:
        """The jobs of a transformation's tasks by status."""
        k = trans_tasks.c
        stmt = (
            select(jobs.c.status, func.count())
            .select_from(trans_tasks.join(jobs, jobs.c.job_id == k.job_id))
            .where(k.trans_id == trans_id)
            .group_by(jobs.c.status)
        )
        return {str(s): int(n) for s, n in conn.execute(stmt)}

    def failure_counts(self, conn: Connection, trans_id: int, limit: int = 20) -> dict[str, int]:
        """Failed tasks of a transformation by reason, the most frequent first."""
        k = trans_tasks.c
        n = func.count().label("n")
        stmt = (
            select(k.error, n)
            .where(k.trans_id == trans_id, k.status == "Failed")
            .group_by(k.error)
            .order_by(n.desc())
            .limit(limit)
        )
        return {str(e) or "(no reason)": int(c) for e, c in conn.execute(stmt)}

    def last_event_id(self, conn: Connection) -> int:
        """The largest catalog event id committed so far (0: none)."""
        return int(conn.execute(select(func.max(catalog_events.c.event_id))).scalar() or 0)

    def events_pending(self, conn: Connection, consumer: str, upto: int) -> bool:
        """Whether ``consumer`` has not applied every catalog event up to id ``upto`` yet
        (unsequenced, or after its cursor), or directory scans are still queued."""
        e = catalog_events.c
        if conn.execute(select(trans_dir_scans.c.id).limit(1)).first() is not None:
            return True
        early = e.event_id <= upto
        if conn.execute(select(e.event_id).where(early, e.seq.is_(None)).limit(1)).first():
            return True
        position = conn.execute(
            select(event_cursors.c.position).where(event_cursors.c.consumer == consumer)
        ).scalar()
        if position is None:
            return False
        stmt = select(e.event_id).where(early, e.seq > position).limit(1)
        return conn.execute(stmt).first() is not None
