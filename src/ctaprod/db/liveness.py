"""Service liveness: one row per API server process (up since, last beat)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from ctaprod.db.tables import service_liveness

T = service_liveness.c


class LivenessDB:
    """Rows of ``service_liveness``. Methods never commit."""

    def beat(
        self, conn: Connection, service: str, instance: str, up_since: datetime, now: datetime
    ) -> None:
        """Record that ``instance`` of ``service``, up since ``up_since``, is alive at ``now``."""
        res = conn.execute(
            update(service_liveness)
            .where(T.instance == instance[:255])
            .values(service=service, up_since=up_since, last_beat=now)
        )
        if res.rowcount == 0:
            conn.execute(
                insert(service_liveness).values(
                    instance=instance[:255], service=service, up_since=up_since, last_beat=now
                )
            )

    def periods(self, conn: Connection, service: str) -> list[tuple[datetime, datetime]]:
        """(up since, last beat) of every known instance of ``service``."""
        rows = conn.execute(
            select(T.up_since, T.last_beat).where(T.service == service).order_by(T.up_since)
        )
        return [(r[0], r[1]) for r in rows]

    def forget(self, conn: Connection, service: str, before: datetime) -> int:
        """Drop the rows of instances silent since before ``before``; how many."""
        res = conn.execute(
            delete(service_liveness).where(T.service == service, T.last_beat < before)
        )
        return int(res.rowcount)
