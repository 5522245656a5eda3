"""The site mask: sites and whether they may receive jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, insert, select, update

from ctaprod.db.tables import sites

ACTIVE = "Active"
BANNED = "Banned"


class SiteDB:
    def banned(self, conn: Connection) -> frozenset[str]:
        rows = conn.execute(select(sites.c.name).where(sites.c.status == BANNED))
        return frozenset(r[0] for r in rows)

    def all(self, conn: Connection) -> list[RowMapping]:
        return list(conn.execute(select(sites).order_by(sites.c.name)).mappings())

    def set_status(
        self, conn: Connection, name: str, status: str, reason: str, by: str, now: datetime
    ) -> None:
        values = {"status": status, "reason": reason, "updated_by": by, "updated_at": now}
        if conn.execute(update(sites).where(sites.c.name == name).values(**values)).rowcount == 0:
            conn.execute(insert(sites).values(name=name, **values))
