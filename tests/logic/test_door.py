"""The generic state-change door (ctaprod.logic.door) on a toy entity, on the real database.

A small table of "gates" is created for the test, with a machine declaring a before hook (a
column written with the step), after hooks (rows written for the applied steps) and a chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    event,
    insert,
    select,
    update,
)

from ctaprod.core.errors import InvalidTransition
from ctaprod.core.statemachine import Change, Hook, StateMachine, Transition, on_enter, table
from ctaprod.db.engine import Database
from ctaprod.db.statechange import ConditionalWriter, StatusWrite
from ctaprod.db.types import UTCDateTime, utcnow
from ctaprod.logic.door import Door, HookContext, change_states


class Gate(StrEnum):
    NEW = "New"
    OPEN = "Open"
    SHUT = "Shut"
    GONE = "Gone"


G = Gate
GATE_MACHINE: StateMachine[Gate] = StateMachine(
    "gate",
    table([(G.NEW, [G.OPEN, G.GONE]), (G.OPEN, [G.SHUT, G.GONE]), (G.SHUT, [G.OPEN, G.GONE])]),
    final=frozenset({G.GONE}),
    hooks=(on_enter("closed_at", [G.SHUT, G.GONE]), Hook("log")),
)

meta = MetaData()
gates = Table(
    "test_door_gates",
    meta,
    Column("gate_id", Integer, primary_key=True, autoincrement=False),
    Column("status", String(16), nullable=False),
    Column("note", String(64), nullable=False, default=""),
    Column("last_update", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("color", String(16), nullable=True),
)
gate_log = Table(
    "test_door_gate_log",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gate_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(32), nullable=False),
)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    meta.drop_all(database.engine)
    meta.create_all(database.engine)
    yield database
    meta.drop_all(database.engine)
    database.dispose()


@dataclass(frozen=True)
class GateRow:
    gate_id: int
    status: Gate


def gate_door(db: Database) -> Door[Gate, GateRow]:
    writer = ConditionalWriter(gates, "gate_id", reason="note")
    by_id = select(gates.c.gate_id, gates.c.status)
    if not db.is_sqlite:
        by_id = by_id.with_for_update()

    def read(conn: Connection, ids: Sequence[int]) -> Mapping[int, GateRow]:
        rows = conn.execute(by_id.where(gates.c.gate_id.in_(list(ids))))
        return {int(r[0]): GateRow(int(r[0]), Gate(r[1])) for r in rows}

    def write(conn: Connection, steps: Sequence[Transition[Gate]], now: datetime) -> set[int]:
        return writer.apply(
            conn,
            [StatusWrite(t.ident, t.old.value, t.new.value, t.reason, t.values) for t in steps],
            now,
        )

    def log(conn: Connection, steps: Sequence[Transition[Gate]], h: HookContext[GateRow]) -> None:
        conn.execute(
            insert(gate_log),
            [{"gate_id": t.ident, "status": t.new.value, "source": h.source} for t in steps],
        )

    return Door(
        GATE_MACHINE,
        read,
        lambda g: g.status,
        write,
        before={"closed_at": lambda t, now: {"closed_at": now}},
        after={"log": log},
    )


def add(db: Database, *rows: tuple[int, Gate]) -> None:
    with db.write() as conn:
        conn.execute(insert(gates), [{"gate_id": i, "status": s.value} for i, s in rows])


def rows(db: Database) -> dict[int, dict[str, Any]]:
    with db.read() as conn:
        return {int(r.gate_id): dict(r._mapping) for r in conn.execute(select(gates))}


def log_of(db: Database) -> list[tuple[int, str, str]]:
    with db.read() as conn:
        q = select(gate_log.c.gate_id, gate_log.c.status, gate_log.c.source)
        return [tuple(r) for r in conn.execute(q.order_by(gate_log.c.id))]  # type: ignore[misc]


def test_applies_steps_runs_hooks_and_reports(db: Database) -> None:
    add(db, (1, G.NEW), (2, G.OPEN), (3, G.GONE))
    now = utcnow()
    wanted = {1: [Change(G.OPEN, "opened")], 2: [Change(G.SHUT, "shut", {"color": "red"})]}
    wanted[3] = [Change(G.OPEN)]
    with db.write() as conn:
        result = change_states(
            gate_door(db), conn, [1, 2, 3, 4], lambda g: None, source="t", now=now
        )
        assert not result.applied
        assert not result.missed
        assert sorted(result.states) == [1, 2, 3]
        result = change_states(
            gate_door(db),
            conn,
            [1, 2, 3, 4],
            lambda g: wanted[g.gate_id],
            source="tester",
            now=now,
        )
    assert [(t.ident, t.old, t.new) for t in result.applied] == [
        (1, G.NEW, G.OPEN),
        (2, G.OPEN, G.SHUT),
    ]
    assert [(r.ident, r.current, r.reason) for r in result.rejected] == [
        (3, G.GONE, "cannot go from Gone to Open (final state)"),
        (4, None, "no gate 4"),
    ]
    assert result.missed == []
    got = rows(db)
    assert (got[1]["status"], got[1]["note"], got[1]["closed_at"]) == ("Open", "opened", None)
    assert (got[2]["status"], got[2]["note"], got[2]["color"]) == ("Shut", "shut", "red")
    assert got[2]["closed_at"] == now  # the before hook, declared on entering Shut
    assert got[3]["status"] == "Gone"
    assert log_of(db) == [(1, "Open", "tester"), (2, "Shut", "tester")]


def test_strict_raises_before_writing(db: Database) -> None:
    add(db, (1, G.NEW), (2, G.GONE))
    with (
        pytest.raises(InvalidTransition, match="gate 2 is Gone: cannot go to Open"),
        db.write() as conn,
    ):
        change_states(
            gate_door(db),
            conn,
            [1, 2],
            lambda g: [Change(G.OPEN)],
            source="t",
            now=utcnow(),
            strict=True,
        )
    assert rows(db)[1]["status"] == "New"
    assert log_of(db) == []


def test_chain_is_checked_step_by_step_and_rejected_whole(db: Database) -> None:
    add(db, (1, G.NEW), (2, G.NEW))
    chains = {1: [Change(G.OPEN), Change(G.SHUT), Change(G.GONE)]}
    chains[2] = [Change(G.OPEN), Change(G.NEW)]  # Open -> New is illegal: nothing applied
    with db.write() as conn:
        result = change_states(
            gate_door(db), conn, [1, 2], lambda g: chains[g.gate_id], source="c", now=utcnow()
        )
    assert [t.new for t in result.applied] == [G.OPEN, G.SHUT, G.GONE]
    assert [(r.ident, r.current, r.target) for r in result.rejected] == [(2, G.OPEN, G.NEW)]
    assert result.final_status() == {1: G.GONE}
    assert rows(db)[1]["status"] == "Gone"
    assert rows(db)[2]["status"] == "New"
    assert log_of(db) == [(1, "Open", "c"), (1, "Shut", "c"), (1, "Gone", "c")]


def test_missed_write_is_reported_without_hooks(db: Database) -> None:
    """Rows that changed between the read and the conditional write: their change is reported
    missed, nothing of it is written, no hook runs for it."""
    add(db, (1, G.NEW), (2, G.NEW), (3, G.NEW), (4, G.NEW))
    with db.read() as conn:
        seen = gate_door(db).read(conn, [1, 2, 3, 4])  # read; then another writer moves 2, 3
    with db.write() as conn:
        conn.execute(update(gates).where(gates.c.gate_id == 2).values(status="Gone"))
        conn.execute(update(gates).where(gates.c.gate_id == 3).values(status="Open"))
    chains = {1: [Change(G.OPEN, "mine"), Change(G.SHUT, "mine")]}
    chains[2] = chains[1]
    chains[3] = chains[4] = [Change(G.OPEN, "mine")]
    with db.write() as conn:
        result = change_states(
            gate_door(db),
            conn,
            [1, 2, 3, 4],
            lambda g: chains[g.gate_id],
            source="late",
            now=utcnow(),
            known=seen,
        )
    assert [(t.ident, t.new) for t in result.applied] == [(1, G.OPEN), (1, G.SHUT), (4, G.OPEN)]
    # Gate 3 is Open, the target asked for, but not by this call: missed all the same.
    assert sorted((m.ident, m.old, m.new) for m in result.missed) == [
        (2, G.NEW, G.SHUT),
        (3, G.NEW, G.OPEN),
    ]
    got = rows(db)
    assert [got[i]["status"] for i in (1, 2, 3, 4)] == ["Shut", "Gone", "Open", "Open"]
    assert got[2]["note"] == ""
    assert got[3]["note"] == ""
    assert got[2]["closed_at"] is None
    assert log_of(db) == [(1, "Open", "late"), (1, "Shut", "late"), (4, "Open", "late")]


@pytest.mark.parametrize("n", [10, 500])
def test_statements_do_not_grow_with_the_batch(db: Database, n: int) -> None:
    add(db, *((i, G.NEW) for i in range(1, n + 1)))
    count = [0]

    def counter(*_: Any) -> None:
        count[0] += 1

    with db.write() as conn:
        event.listen(conn, "before_cursor_execute", counter)
        result = change_states(
            gate_door(db),
            conn,
            list(range(1, n + 1)),
            lambda g: [Change(G.OPEN), Change(G.SHUT, values={"color": "blue"})],
            source="bulk",
            now=utcnow(),
        )
        event.remove(conn, "before_cursor_execute", counter)
    assert len(result.applied) == 2 * n
    # read + one UPDATE (each chain collapsed) in a savepoint + one log INSERT
    assert count[0] == 1 + 3 + 1
