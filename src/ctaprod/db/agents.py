"""Agent heartbeats: one row per (agent name, replica), rewritten after every cycle, and the
replicas' liveness beats (``alive_at``) that tell which replicas share the work."""

from __future__ import annotations

from collections.abc import Sequence
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

    def beat(
        self,
        conn: Connection,
        names: Sequence[str],
        replica: int,
        host: str,
        now: datetime,
        alive: bool = True,
    ) -> None:
        """Record that replica ``replica`` of the agents ``names`` is alive at ``now`` (with
        ``alive`` False: that it stopped, so that the others take its share at once)."""
        t = agent_heartbeats.c
        for name in names:
            res = conn.execute(
                update(agent_heartbeats)
                .where(t.name == name, t.replica == replica)
                .values(host=host[:255], alive_at=now if alive else None)
            )
            if res.rowcount == 0 and alive:
                conn.execute(
                    insert(agent_heartbeats).values(
                        name=name,
                        replica=replica,
                        host=host[:255],
                        last_cycle=now,
                        cycles=0,
                        alive_at=now,
                    )
                )

    def live_replicas(self, conn: Connection, name: str, since: datetime) -> list[int]:
        """The replicas of agent ``name`` whose last liveness beat is at or after ``since``."""
        t = agent_heartbeats.c
        rows = conn.execute(
            select(t.replica).where(t.name == name, t.alive_at >= since).order_by(t.replica)
        )
        return [int(r[0]) for r in rows]

    def heartbeats(self, conn: Connection) -> list[RowMapping]:
        """All heartbeat rows, by agent name and replica."""
        return list(
            conn.execute(
                select(agent_heartbeats).order_by(
                    agent_heartbeats.c.name, agent_heartbeats.c.replica
                )
            ).mappings()
        )
