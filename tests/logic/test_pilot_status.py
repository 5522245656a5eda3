"""The pilot door (ctaprod.logic.pilot_status): checked against the state read, conditional
writes, hooks, rejected and missed changes reported; on the real test database."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import RowMapping

from ctaprod.core.errors import Forbidden, InvalidTransition
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.logic import runtime
from ctaprod.logic.pilot_status import change_one_pilot, change_pilots, pilot_change
from tests.agents.helpers import PILOT, SITE, World

P = PilotStatus


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


def _pilots(world: World, count: int, status: PilotStatus = P.WAITING) -> list[int]:
    now = world.clock()
    with world.ctx.db.write() as conn:
        return world.ctx.pilots.add(
            conn,
            [
                {
                    "stamp": f"p{i}-{now.timestamp()}",
                    "ce_ref": f"ref{i}",
                    "ce": "ce.test",
                    "queue": "q",
                    "site": SITE,
                    "status": status.value,
                    "submission_time": now,
                    "last_update": now,
                    "unknown_since": now,
                }
                for i in range(count)
            ],
        )


def _row(world: World, pilot_id: int) -> RowMapping:
    with world.ctx.db.read() as conn:
        row = world.ctx.pilots.get(conn, pilot_id)
    assert row is not None
    return row


def test_a_change_checked_against_a_state_that_changed_is_missed_not_written(
    world: World,
) -> None:
    [pid] = _pilots(world, 1)
    stale = {pid: _row(world, pid)}  # read by the status agent before asking its CE
    with world.ctx.db.write() as conn:  # meanwhile the pilot starts
        change_one_pilot(world.ctx, conn, pid, pilot_change(P.RUNNING, "Registered"), source="t")
    with world.ctx.db.write() as conn:
        result = change_pilots(
            world.ctx,
            conn,
            [pid],
            lambda row: [pilot_change(P.LOST, "Unknown to the CE")],
            source="t",
            known=stale,
        )
    assert [(m.ident, m.old, m.new) for m in result.missed] == [(pid, P.WAITING, P.LOST)]
    assert result.applied == []
    assert (_row(world, pid)["status"], _row(world, pid)["status_reason"]) == (
        "Running",
        "Registered",
    )


def test_an_illegal_change_is_rejected_with_the_machines_reason(world: World) -> None:
    [pid] = _pilots(world, 1, P.DONE)
    with world.ctx.db.write() as conn:
        result = change_pilots(
            world.ctx, conn, [pid, 999_999], lambda row: [pilot_change(P.RUNNING, "x")], source="t"
        )
    reasons = {r.ident: r.reason for r in result.rejected}
    assert reasons == {
        pid: "cannot go from Done to Running (final state)",
        999_999: "no pilot 999999",
    }
    with world.ctx.db.write() as conn, pytest.raises(InvalidTransition, match=r"pilot \d+ is Done"):
        change_one_pilot(world.ctx, conn, pid, pilot_change(P.RUNNING, "x"), source="t")
    assert _row(world, pid)["status"] == "Done"


def test_any_change_ends_the_unknown_to_the_ce_count(world: World) -> None:
    [pid] = _pilots(world, 1)
    assert _row(world, pid)["unknown_since"] is not None
    with world.ctx.db.write() as conn:
        change_one_pilot(world.ctx, conn, pid, pilot_change(P.RUNNING, "Registered"), source="t")
    assert _row(world, pid)["unknown_since"] is None


def test_registration_without_a_submission_record_goes_through_the_machine(
    world: World,
) -> None:
    reg = runtime.register_pilot(world.ctx, world.services.tokens, PILOT, "s-1", SITE, "ce", "q")
    row = _row(world, reg.pilot_id)
    assert (row["status"], row["status_reason"]) == ("Running", "Registered")
    # The record exists now: a hand-start token cannot register it again.
    with pytest.raises(Forbidden, match="existing pilot record"):
        runtime.register_pilot(world.ctx, world.services.tokens, PILOT, "s-1", SITE, "ce", "q")
    # Its session token cannot register anything.
    session = world.services.tokens.verify(reg.session_token)
    with pytest.raises(Forbidden, match="registration credential"):
        runtime.register_pilot(world.ctx, world.services.tokens, session, "s-2", SITE, "ce", "q")


def test_concurrent_end_report_and_lost_verdict_one_wins_the_other_is_told(
    world: World,
) -> None:
    """The pilot reports its end while the status agent declares it Lost: exactly one change
    is applied, the other is refused from the state it reads (never Lost over Done)."""
    ids = _pilots(world, 12, P.RUNNING)
    outcomes: dict[str, list[Any]] = {"end": [], "lost": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def act(kind: str, target: PilotStatus) -> None:
        try:
            for pid in ids:
                barrier.wait(10)
                with world.ctx.db.write() as conn:
                    result = change_pilots(
                        world.ctx,
                        conn,
                        [pid],
                        lambda row: [pilot_change(target, kind)],
                        source=kind,
                    )
                outcomes[kind].append(result)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=act, args=("end", P.DONE)),
        threading.Thread(target=act, args=("lost", P.LOST)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for i, pid in enumerate(ids):
        end, lost = outcomes["end"][i], outcomes["lost"][i]
        # Whichever came first, the pilot ends Done: Done first refuses Lost (final state);
        # Lost first lets Done in (a forgotten pilot may report after all).
        assert _row(world, pid)["status"] == "Done"
        assert [t.new for t in end.applied] == [P.DONE]
        if not lost.applied:
            assert [r.reason for r in lost.rejected] == [
                "cannot go from Done to Lost (final state)"
            ]
        for r in (end, lost):
            assert r.missed == []  # the rows are read under lock: nothing changes under us
