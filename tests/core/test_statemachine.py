"""Tests for the job and pilot state machines (ctaprod.core.statemachine and its tables).

The expected tables are written out here, independently of the code: every pair of states is
checked both ways, so adding or dropping an arrow in the code makes a test fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import StrEnum

import pytest

from ctaprod.core.errors import Conflict, InvalidTransition
from ctaprod.core.job_states import FINAL_STATES, JOB_MACHINE, KILLABLE, RESCHEDULABLE, JobStatus
from ctaprod.core.pilot_states import PILOT_ALIVE, PILOT_FINAL, PILOT_MACHINE, PilotStatus
from ctaprod.core.statemachine import StateMachine, table

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
