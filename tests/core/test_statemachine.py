"""Tests for the job and pilot state machines (ctaprod.core.statemachine and its tables).

The expected tables are written out here, independently of the code: every pair of states is
checked both ways, so adding or dropping an arrow in the code makes a test fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import StrEnum

import pytest

from ctaprod.core.errors import Conflict, InvalidTransition, NotFound
from ctaprod.core.job_states import FINAL_STATES, JOB_MACHINE, KILLABLE, RESCHEDULABLE, JobStatus
from ctaprod.core.pilot_states import PILOT_ALIVE, PILOT_FINAL, PILOT_MACHINE, PilotStatus
from ctaprod.core.statemachine import (
    Hook,
    Missed,
    Rejected,
    StateMachine,
    Transition,
    TransitionResult,
    on_enter,
    on_leave,
    table,
)

J = JobStatus
P = PilotStatus

JOB_ARROWS: dict[JobStatus, set[JobStatus]] = {
    J.RECEIVED: {J.CHECKING, J.FAILED, J.KILLED, J.DELETED},
    J.CHECKING: {J.WAITING, J.STAGING, J.FAILED, J.KILLED, J.DELETED},
    J.STAGING: {J.WAITING, J.FAILED, J.KILLED, J.DELETED},
    J.WAITING: {J.MATCHED, J.FAILED, J.KILLED, J.DELETED},
    J.MATCHED: {J.RUNNING, J.STALLED, J.FAILED, J.KILLED, J.RESCHEDULED, J.COMPLETING, J.DONE},
    J.RUNNING: {J.COMPLETING, J.COMPLETED, J.DONE, J.FAILED, J.STALLED, J.KILLED, J.RESCHEDULED},
    J.STALLED: {J.RUNNING, J.COMPLETING, J.COMPLETED, J.DONE, J.FAILED, J.KILLED, J.RESCHEDULED},
    J.COMPLETING: {J.COMPLETED, J.DONE, J.FAILED, J.STALLED, J.KILLED, J.RESCHEDULED},
    J.COMPLETED: {J.DONE, J.FAILED, J.KILLED},
    J.RESCHEDULED: {J.WAITING, J.FAILED, J.KILLED, J.DELETED},
    J.FAILED: {J.RESCHEDULED, J.DELETED},
    J.KILLED: {J.RESCHEDULED, J.DELETED},
    J.DONE: {J.DELETED},
    J.DELETED: set(),
}

PILOT_ARROWS: dict[PilotStatus, set[PilotStatus]] = {
    P.SUBMITTED: {P.WAITING, P.RUNNING, P.DONE, P.FAILED, P.ABORTED, P.LOST},
    P.WAITING: {P.RUNNING, P.DONE, P.FAILED, P.ABORTED, P.LOST},
    P.RUNNING: {P.DONE, P.FAILED, P.ABORTED, P.LOST},
    P.LOST: {P.RUNNING, P.DONE, P.FAILED},
    P.DONE: set(),
    P.FAILED: set(),
    P.ABORTED: set(),
}

JOB_PAIRS = list(itertools.product(JobStatus, JobStatus))
PILOT_PAIRS = list(itertools.product(PilotStatus, PilotStatus))


def _ids(pairs: Sequence[tuple[StrEnum, StrEnum]]) -> list[str]:
    return [f"{a.value}->{b.value}" for a, b in pairs]


def test_tables_cover_every_state() -> None:
    assert set(JOB_MACHINE.transitions) == set(JobStatus)
    assert set(PILOT_MACHINE.transitions) == set(PilotStatus)
    assert set(JOB_ARROWS) == set(JobStatus)
    assert set(PILOT_ARROWS) == set(PilotStatus)


@pytest.mark.parametrize(("current", "target"), JOB_PAIRS, ids=_ids(JOB_PAIRS))
def test_job_transition(current: JobStatus, target: JobStatus) -> None:
    legal = target in JOB_ARROWS[current]
    assert JOB_MACHINE.allowed(current, target) is legal
    if legal:
        JOB_MACHINE.check(17, current, target)
        return
    with pytest.raises(InvalidTransition) as info:
        JOB_MACHINE.check(17, current, target)
    err = info.value
    assert err.current == current.value
    assert err.target == target.value
    assert f"job 17 is {current.value}" in str(err)
    assert target.value in str(err)
    assert err.detail == {
        "entity": "job",
        "id": 17,
        "current": current.value,
        "target": target.value,
    }


@pytest.mark.parametrize(("current", "target"), PILOT_PAIRS, ids=_ids(PILOT_PAIRS))
def test_pilot_transition(current: PilotStatus, target: PilotStatus) -> None:
    legal = target in PILOT_ARROWS[current]
    assert PILOT_MACHINE.allowed(current, target) is legal
    if legal:
        PILOT_MACHINE.check(5, current, target)
        return
    with pytest.raises(InvalidTransition) as info:
        PILOT_MACHINE.check(5, current, target)
    assert info.value.current == current.value
    assert f"pilot 5 is {current.value}: cannot go to {target.value}" in str(info.value)


def test_no_state_goes_to_itself() -> None:
    for status in JobStatus:
        assert not JOB_MACHINE.allowed(status, status)
    for pstatus in PilotStatus:
        assert not PILOT_MACHINE.allowed(pstatus, pstatus)


def test_refusal_from_a_final_state_says_so() -> None:
    with pytest.raises(InvalidTransition) as info:
        JOB_MACHINE.check(3, J.DONE, J.RUNNING)
    assert "final state" in str(info.value)
    with pytest.raises(InvalidTransition) as info:
        JOB_MACHINE.check(3, J.WAITING, J.RUNNING)
    assert "final state" not in str(info.value)
    with pytest.raises(InvalidTransition) as pinfo:
        PILOT_MACHINE.check(3, P.ABORTED, P.RUNNING)
    assert "final state" in str(pinfo.value)


def test_invalid_transition_is_a_conflict() -> None:
    # The API maps Conflict to HTTP 409.
    assert issubclass(InvalidTransition, Conflict)
    assert InvalidTransition.code == "invalid_transition"


def test_sources() -> None:
    assert JOB_MACHINE.sources(J.WAITING) == {J.CHECKING, J.STAGING, J.RESCHEDULED}
    assert JOB_MACHINE.sources(J.RECEIVED) == set()
    assert PILOT_MACHINE.sources(P.RUNNING) == {P.SUBMITTED, P.WAITING, P.LOST}
    for target in JobStatus:
        assert JOB_MACHINE.sources(target) == {s for s, t in JOB_ARROWS.items() if target in t}


def test_named_state_sets() -> None:
    assert {J.DONE, J.FAILED, J.KILLED, J.DELETED} == FINAL_STATES
    assert JOB_MACHINE.final == FINAL_STATES
    # Every killable state can really go to Killed, every reschedulable one to Rescheduled.
    assert all(JOB_MACHINE.allowed(s, J.KILLED) for s in KILLABLE)
    assert all(JOB_MACHINE.allowed(s, J.RESCHEDULED) for s in RESCHEDULABLE)
    assert not KILLABLE & FINAL_STATES
    assert set(PilotStatus) == PILOT_FINAL | PILOT_ALIVE
    assert not PILOT_FINAL & PILOT_ALIVE
    assert PILOT_MACHINE.final == {P.DONE, P.FAILED, P.ABORTED}


def test_a_state_machine_is_plain_data() -> None:
    class Light(StrEnum):
        RED = "Red"
        GREEN = "Green"

    machine = StateMachine(
        "light",
        table([(Light.RED, [Light.GREEN]), (Light.GREEN, [])]),
        final=frozenset({Light.GREEN}),
    )
    machine.check("x", Light.RED, Light.GREEN)
    with pytest.raises(InvalidTransition, match="light x is Green: cannot go to Red"):
        machine.check("x", Light.GREEN, Light.RED)


# --- the generic machinery: hooks declared by state, rejections, results ---------------------


class Door(StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    LOCKED = "Locked"
    GONE = "Gone"


D = Door
DOOR_MACHINE: StateMachine[Door] = StateMachine(
    "door",
    table(
        [
            (D.CLOSED, [D.OPEN, D.LOCKED, D.GONE]),
            (D.OPEN, [D.CLOSED, D.GONE]),
            (D.LOCKED, [D.CLOSED, D.GONE]),
            (D.GONE, []),
        ]
    ),
    final=frozenset({D.GONE}),
    hooks=(
        on_enter("stamp_open", [D.OPEN]),
        on_leave("count_unlock", [D.LOCKED]),
        on_enter("bury", [D.GONE], leaving=[D.OPEN]),
        Hook("history"),
    ),
)


def _fired(old: Door, new: Door) -> list[str]:
    return [h.name for h in DOOR_MACHINE.hooks_for(old, new)]


def test_hooks_fire_by_state_in_declaration_order() -> None:
    assert _fired(D.CLOSED, D.OPEN) == ["stamp_open", "history"]
    assert _fired(D.LOCKED, D.CLOSED) == ["count_unlock", "history"]
    assert _fired(D.OPEN, D.GONE) == ["bury", "history"]
    assert _fired(D.CLOSED, D.GONE) == ["history"]  # bury only when leaving Open
    assert _fired(D.LOCKED, D.GONE) == ["count_unlock", "history"]
    assert Hook("any").fires(D.OPEN, D.CLOSED)


def test_hook_names_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        StateMachine("door", DOOR_MACHINE.transitions, hooks=(Hook("h"), Hook("h")))


def test_refusal_names_the_reason() -> None:
    assert DOOR_MACHINE.refusal(D.CLOSED, D.OPEN) is None
    assert DOOR_MACHINE.refusal(D.OPEN, D.LOCKED) == "cannot go from Open to Locked"
    assert DOOR_MACHINE.refusal(D.GONE, D.OPEN) == "cannot go from Gone to Open (final state)"


def test_result_raises_the_first_rejection() -> None:
    result: TransitionResult[Door, object] = TransitionResult("door")
    result.raise_rejected()  # nothing rejected: no error
    result.rejected.append(Rejected(4, D.GONE, D.OPEN, "cannot go from Gone to Open (final state)"))
    with pytest.raises(InvalidTransition, match=r"door 4 is Gone: cannot go to Open \(final"):
        result.raise_rejected()
    result.rejected.append(Rejected(9, None, None, "no door 9"))
    with pytest.raises(NotFound, match="no door 9"):  # a missing entity is named first
        result.raise_rejected()
    custom: TransitionResult[Door, object] = TransitionResult("door")
    custom.rejected.append(Rejected(2, D.OPEN, D.LOCKED, "the key is lost"))
    with pytest.raises(InvalidTransition, match=r"door 2 is Open: cannot go to Locked \(the key"):
        custom.raise_rejected()


def test_result_summaries() -> None:
    result: TransitionResult[Door, object] = TransitionResult("door")
    result.applied += [Transition(1, D.CLOSED, D.OPEN), Transition(1, D.OPEN, D.GONE)]
    result.missed.append(Missed(2, D.CLOSED, D.OPEN))
    assert result.final_status() == {1: D.GONE}
    assert result.applied_ids() == {1}
    assert result.missed_ids() == {2}
