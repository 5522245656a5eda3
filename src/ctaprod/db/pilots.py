"""Pilot registry and pilot logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from ctaprod.db.tables import pilot_logs, pilots


class PilotDB:
    def __init__(self, for_update: bool) -> None:
        self.for_update = for_update

    def add(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert pilots (stamp, ce_ref, ce, queue, site, status, times); return their IDs."""
        res = conn.execute(
            insert(pilots).returning(pilots.c.pilot_id, sort_by_parameter_order=True), list(rows)
        )
        return [r[0] for r in res]

    def by_stamp(self, conn: Connection, stamp: str) -> RowMapping | None:
        stmt = select(pilots).where(pilots.c.stamp == stamp)
        if self.for_update:
            stmt = stmt.with_for_update()
        return conn.execute(stmt).mappings().first()

    def consume_registration(self, conn: Connection, stamp: str, now: datetime) -> bool:
        """Mark the pilot ``stamp`` registered, if it was not yet: True for the one caller
        that did (a conditional UPDATE: two registrations cannot both succeed)."""
        res = conn.execute(
            update(pilots)
            .where(pilots.c.stamp == stamp, pilots.c.registered_at.is_(None))
            .values(registered_at=now)
        )
        return res.rowcount == 1

    def record_refusal(self, conn: Connection, stamp: str, note: str) -> None:
        """Keep on the pilot's row why a registration under its stamp was refused."""
        conn.execute(
            update(pilots).where(pilots.c.stamp == stamp).values(registration_refused=note[:255])
        )

    def get(self, conn: Connection, pilot_id: int, lock: bool = False) -> RowMapping | None:
        stmt = select(pilots).where(pilots.c.pilot_id == pilot_id)
        if lock and self.for_update:
            stmt = stmt.with_for_update()
        return conn.execute(stmt).mappings().first()

    def statuses(self, conn: Connection, ids: Sequence[int]) -> dict[int, str]:
        """The status of each existing pilot among ``ids`` (not locked)."""
        if not ids:
            return {}
        stmt = select(pilots.c.pilot_id, pilots.c.status).where(
            pilots.c.pilot_id.in_(sorted(set(ids)))
        )
        return {int(r[0]): str(r[1]) for r in conn.execute(stmt)}

    def read_locked(self, conn: Connection, ids: Sequence[int]) -> dict[int, RowMapping]:
        """The rows of these pilots by ID, locked for update where the engine has locks."""
        if not ids:
            return {}
        stmt = select(pilots).where(pilots.c.pilot_id.in_(list(ids))).order_by(pilots.c.pilot_id)
        if self.for_update:
            stmt = stmt.with_for_update()
        return {int(r["pilot_id"]): r for r in conn.execute(stmt).mappings()}

    def set_unknown_since(
        self, conn: Connection, pilot_ids: Sequence[int], since: datetime | None
    ) -> None:
        """Record when the CE first did not know these pilots (None: it knows them again)."""
        if pilot_ids:
            conn.execute(
                update(pilots)
                .where(pilots.c.pilot_id.in_(list(pilot_ids)))
                .values(unknown_since=since)
            )

    def touch(self, conn: Connection, pilot_id: int, now: datetime, **values: Any) -> None:
        conn.execute(
            update(pilots).where(pilots.c.pilot_id == pilot_id).values(last_update=now, **values)
        )

    def search(
        self,
        conn: Connection,
        *,
        statuses: Sequence[str] = (),
        ce: str | None = None,
        queue: str | None = None,
        site: str | None = None,
        limit: int = 1000,
        after: int | None = None,
    ) -> list[RowMapping]:
        stmt = select(pilots)
        if statuses:
            stmt = stmt.where(pilots.c.status.in_(list(statuses)))
        if ce is not None:
            stmt = stmt.where(pilots.c.ce == ce)
        if queue is not None:
            stmt = stmt.where(pilots.c.queue == queue)
        if site is not None:
            stmt = stmt.where(pilots.c.site == site)
        if after is not None:
            stmt = stmt.where(pilots.c.pilot_id > after)
        return list(conn.execute(stmt.order_by(pilots.c.pilot_id).limit(limit)).mappings())

    def counts(self, conn: Connection, ce: str, queue: str) -> dict[str, int]:
        rows = conn.execute(
            select(pilots.c.status, func.count())
            .where(pilots.c.ce == ce, pilots.c.queue == queue)
            .group_by(pilots.c.status)
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def save_log(self, conn: Connection, pilot_id: int, text: str, now: datetime) -> None:
        conn.execute(delete(pilot_logs).where(pilot_logs.c.pilot_id == pilot_id))
        conn.execute(insert(pilot_logs).values(pilot_id=pilot_id, log=text, updated=now))

    def log(self, conn: Connection, pilot_id: int) -> str | None:
        return conn.execute(
            select(pilot_logs.c.log).where(pilot_logs.c.pilot_id == pilot_id)
        ).scalar_one_or_none()

    def set_ce_refs(self, conn: Connection, refs: Mapping[int, str]) -> None:
        """Store the computing element's reference of each pilot (pilot_id -> ref)."""
        if refs:
            conn.execute(
                update(pilots)
                .where(pilots.c.pilot_id == bindparam("b_id"))
                .values(ce_ref=bindparam("b_ref")),
                [{"b_id": pid, "b_ref": ref[:255]} for pid, ref in refs.items()],
            )

    def without_log(
        self,
        conn: Connection,
        *,
        ce: str,
        queue: str,
        statuses: Sequence[str],
        since: datetime,
        limit: int = 1000,
    ) -> list[RowMapping]:
        """Pilots of a queue in ``statuses``, changed since ``since``, that have no log."""
        has_log = (
            select(pilot_logs.c.pilot_id).where(pilot_logs.c.pilot_id == pilots.c.pilot_id).exists()
        )
        return list(
            conn.execute(
                select(pilots)
                .where(
                    pilots.c.ce == ce,
                    pilots.c.queue == queue,
                    pilots.c.status.in_(list(statuses)),
                    pilots.c.last_update >= since,
                    ~has_log,
                )
                .order_by(pilots.c.pilot_id)
                .limit(limit)
            ).mappings()
        )
