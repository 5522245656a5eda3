"""Agent heartbeats: one row per (agent name, replica), rewritten after every cycle."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, insert, select, update

from ctaprod.db.tables import agent_heartbeats


class AgentDB:
    def record_cycle(
        self, conn: Connection, name: str, replica: int, host: str, now: datetime, error: str
    ) -> None:
        """Count one finished cycle of ``name``/``replica``; ``error`` is '' after a good one."""
        values = {"host": host[:255], "last_cycle": now, "last_error": error}
        res = conn.execute(
            update(agent_heartbeats)
            .where(agent_heartbeats.c.name == name, agent_heartbeats.c.replica == replica)
            .values(cycles=agent_heartbeats.c.cycles + 1, **values)
        )
        if res.rowcount == 0:
            conn.execute(
                insert(agent_heartbeats).values(name=name, replica=replica, cycles=1, **values)
            )

    def heartbeats(self, conn: Connection) -> list[RowMapping]:
        """All heartbeat rows, by agent name and replica."""
        return list(
            conn.execute(
                select(agent_heartbeats).order_by(
                    agent_heartbeats.c.name, agent_heartbeats.c.replica
                )
            ).mappings()
        )
