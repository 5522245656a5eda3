"""The doors of requests, operations and request files (ctaprod.logic.request_states):
checked against the state read, conditional writes, the end_lease hook, rejected and missed
changes reported; on the real test database."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ctaprod.core.errors import InvalidTransition
from ctaprod.core.requests import OperationStatus, RequestSpec, RequestStatus
from ctaprod.core.statemachine import Change
from ctaprod.logic import requests as L
from ctaprod.logic.request_claims import claim_due
from ctaprod.logic.request_states import change_operations, change_requests, when
from tests.agents.helpers import ALICE, World

R, Op = RequestStatus, OperationStatus


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


def _request(world: World, *lfns: str) -> int:
    spec = RequestSpec.model_validate(
        {"operations": [{"type": "RemoveFile", "files": [{"lfn": x} for x in lfns or ["/vo/a"]]}]}
    )
    return L.create_request(world.ctx, ALICE, spec)


def test_a_claim_from_a_stale_read_is_missed_and_reported(world: World) -> None:
    rid = _request(world)
    with world.ctx.db.read() as conn:
        stale = world.ctx.requests.due(conn, world.clock(), 10)  # executor A reads...
    with world.ctx.db.write() as conn:
        assert claim_due(world.ctx, conn, world.clock(), 10, "B#1") == [rid]  # ...B claims
    step = Change(R.ASSIGNED, values={"assigned_by": "A#1"})
    with world.ctx.db.write() as conn:
        result = change_requests(
            world.ctx, conn, [rid], lambda row: [step], source="A", known=stale
        )
    assert [(m.ident, m.old, m.new) for m in result.missed] == [(rid, R.WAITING, R.ASSIGNED)]
    assert L.get_request(world.ctx, ALICE, rid).assigned_by == "B#1"


def test_changes_are_checked_against_the_state_read_not_a_literal_one(world: World) -> None:
    rid = _request(world)
    L.cancel_request(world.ctx, ALICE, rid)
    # Before, the executor "checked" Assigned -> Done on the literal Assigned and let the
    # conditional UPDATE silently match nothing; now the machine sees Canceled.
    with world.ctx.db.write() as conn:
        result = change_requests(
            world.ctx, conn, [rid], lambda row: [Change(R.DONE)], source="executor"
        )
    assert [(r.current, r.target, r.reason) for r in result.rejected] == [
        (R.CANCELED, R.DONE, "cannot go from Canceled to Done (final state)")
    ]
    with pytest.raises(InvalidTransition, match=f"request {rid} is Canceled"):
        L.cancel_request(world.ctx, ALICE, rid)


def test_leaving_assigned_ends_the_lease(world: World) -> None:
    rid = _request(world)
    with world.ctx.db.write() as conn:
        claim_due(world.ctx, conn, world.clock(), 10, "w#1")
    assert L.get_request(world.ctx, ALICE, rid).lease_until is not None
    info = L.cancel_request(world.ctx, ALICE, rid)
    assert (info.status, info.lease_until) == ("Canceled", None)
    assert [o.status for o in info.operations] == ["Canceled"]


def test_operations_move_only_from_the_states_given(world: World) -> None:
    rid = _request(world)
    [op] = L.get_request(world.ctx, ALICE, rid).operations
    with world.ctx.db.write() as conn:
        result = change_operations(
            world.ctx, conn, [op.op_id], when([Op.QUEUED], Change(Op.CANCELED)), source="t"
        )
    assert (result.applied, result.rejected, result.missed) == ([], [], [])
    assert L.get_request(world.ctx, ALICE, rid).operations[0].status == "Waiting"


def test_cancel_racing_with_claims_never_leaves_a_canceled_request_assigned(
    world: World,
) -> None:
    ids = [_request(world, f"/vo/r{i}") for i in range(10)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def claimer() -> None:
        try:
            barrier.wait(10)
            for i in range(10):
                with world.ctx.db.write() as conn:
                    claim_due(world.ctx, conn, world.clock(), 1, f"x#{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    def canceler() -> None:
        try:
            barrier.wait(10)
            for rid in ids:
                try:
                    L.cancel_request(world.ctx, ALICE, rid)
                except InvalidTransition as exc:  # pragma: no cover - Assigned is cancelable
                    errors.append(exc)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer), threading.Thread(target=canceler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for rid in ids:
        info = L.get_request(world.ctx, ALICE, rid)
        assert (info.status, info.lease_until) == ("Canceled", None)
