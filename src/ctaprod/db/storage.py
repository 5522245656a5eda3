"""Storage element status: read/write bans and their history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, RowMapping, insert, select, update

from ctaprod.db.tables import se_history, se_status

__all__ = ["StorageDB"]

_FLAG = {"read": "read_allowed", "write": "write_allowed"}
_REASON = {"read": "read_reason", "write": "write_reason"}


class StorageDB:
    """Run-time status of storage elements. Methods never commit."""

    def statuses(self, conn: Connection, ses: Sequence[str] | None = None) -> dict[str, RowMapping]:
        """The status rows of ``ses`` (all when None) by SE name; SEs never changed are absent."""
        query = select(se_status)
        if ses is not None:
            if not ses:
                return {}
            query = query.where(se_status.c.se.in_(list(ses)))
        return {str(r["se"]): r for r in conn.execute(query).mappings()}

    def set_access(
        self,
        conn: Connection,
        se: str,
        accesses: Sequence[str],
        allowed: bool,
        reason: str,
        author: str,
        now: datetime,
    ) -> None:
        """Allow or ban ``accesses`` (``read``/``write``) of ``se``; one history row each."""
        values: dict[str, object] = {"last_update": now}
        for access in accesses:
            values[_FLAG[access]] = allowed
            values[_REASON[access]] = "" if allowed else reason
        changed = conn.execute(update(se_status).where(se_status.c.se == se).values(**values))
        if changed.rowcount == 0:
            conn.execute(insert(se_status).values(se=se, **values))
        conn.execute(
            insert(se_history),
            [
                {
                    "se": se,
                    "access": access,
                    "allowed": allowed,
                    "reason": reason,
                    "author": author,
                    "time": now,
                }
                for access in accesses
            ],
        )

    def history(self, conn: Connection, se: str, limit: int = 100) -> list[RowMapping]:
        """The latest ``limit`` access changes of ``se``, newest first."""
        query = (
            select(se_history)
            .where(se_history.c.se == se)
            .order_by(se_history.c.time.desc(), se_history.c.id.desc())
            .limit(limit)
        )
        return list(conn.execute(query).mappings())
