"""The transformation, transformation-file and task machines (ctaprod.core.trans_states).

The expected tables are written out here, independently of the code: every pair of states is
checked both ways, so adding or dropping an arrow in the code makes a test fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import StrEnum

import pytest

from ctaprod.core.errors import InvalidTransition
from ctaprod.core.job_states import JobStatus
from ctaprod.core.requests import RequestStatus
from ctaprod.core.statemachine import Change, StateMachine
from ctaprod.core.trans_states import (
    ATTACHING,
    CLEANABLE,
    CREATING_TASKS,
    FLUSHING,
    TASK_FINAL,
    TASK_LIVE,
    TASK_MACHINE,
    TRANSFORMATION_FILE_MACHINE,
    TRANSFORMATION_MACHINE,
    TaskStatus,
    TransFileStatus,
    TransformationStatus,
    file_outcome,
    mirror_steps,
    task_status_for_job,
    task_status_for_request,
)

TS, TF, TK = TransformationStatus, TransFileStatus, TaskStatus

TRANS_ARROWS: dict[StrEnum, set[StrEnum]] = {
    TS.NEW: {TS.ACTIVE, TS.CLEANING},
    TS.ACTIVE: {TS.STOPPED, TS.FLUSH, TS.COMPLETING, TS.CLEANING},
    TS.STOPPED: {TS.ACTIVE, TS.CLEANING},
    TS.FLUSH: {TS.ACTIVE, TS.COMPLETING, TS.STOPPED, TS.CLEANING},
    TS.COMPLETING: {TS.COMPLETED, TS.ACTIVE, TS.STOPPED, TS.CLEANING},
    TS.COMPLETED: {TS.ACTIVE, TS.CLEANING},
    TS.CLEANING: {TS.CLEANED},
    TS.CLEANED: set(),
}
FILE_ARROWS: dict[StrEnum, set[StrEnum]] = {
    TF.UNUSED: {TF.ASSIGNED, TF.PROBLEMATIC, TF.REMOVED},
    TF.ASSIGNED: {TF.UNUSED, TF.PROCESSED, TF.MAX_RESET, TF.PROBLEMATIC, TF.REMOVED},
    TF.PROCESSED: {TF.REMOVED},
    TF.MAX_RESET: {TF.UNUSED, TF.REMOVED},
    TF.PROBLEMATIC: {TF.UNUSED, TF.REMOVED},
    TF.REMOVED: set(),
}
TASK_ARROWS: dict[StrEnum, set[StrEnum]] = {
    TK.CREATED: {TK.SUBMITTED, TK.FAILED, TK.KILLED},
    TK.SUBMITTED: {TK.WAITING, TK.RUNNING, TK.DONE, TK.FAILED, TK.KILLED},
    TK.WAITING: {TK.RUNNING, TK.DONE, TK.FAILED, TK.KILLED},
    TK.RUNNING: {TK.WAITING, TK.DONE, TK.FAILED, TK.KILLED},
    TK.DONE: set(),
    TK.FAILED: set(),
    TK.KILLED: set(),
}
MACHINES: list[tuple[StateMachine, type[StrEnum], dict[StrEnum, set[StrEnum]]]] = [
    (TRANSFORMATION_MACHINE, TransformationStatus, TRANS_ARROWS),
    (TRANSFORMATION_FILE_MACHINE, TransFileStatus, FILE_ARROWS),
    (TASK_MACHINE, TaskStatus, TASK_ARROWS),
]
CASES = [
    (machine, arrows, a, b)
    for machine, states, arrows in MACHINES
    for a, b in itertools.product(list(states), list(states))
]


def _ids(cases: Sequence[tuple[object, object, StrEnum, StrEnum]]) -> list[str]:
    return [f"{m.entity}:{a.value}->{b.value}" for m, _, a, b in cases]


def test_tables_cover_every_state() -> None:
    for machine, states, arrows in MACHINES:
        assert set(machine.transitions) == set(states) == set(arrows)


@pytest.mark.parametrize(("machine", "arrows", "current", "target"), CASES, ids=_ids(CASES))
def test_transition(
    machine: StateMachine,
    arrows: dict[StrEnum, set[StrEnum]],
    current: StrEnum,
    target: StrEnum,
) -> None:
    legal = target in arrows[current]
    assert machine.allowed(current, target) is legal
    assert (machine.refusal(current, target) is None) is legal
    if legal:
        machine.check(9, current, target)
        return
    with pytest.raises(InvalidTransition) as info:
        machine.check(9, current, target)
    assert info.value.current == current.value  # the 409 names the current state
    assert f"{machine.entity} 9 is {current.value}: cannot go to {target.value}" in str(info.value)


def test_final_states_say_so() -> None:
    with pytest.raises(InvalidTransition, match="final state"):
        TRANSFORMATION_MACHINE.check(1, TS.CLEANED, TS.ACTIVE)
    with pytest.raises(InvalidTransition, match="final state"):
        TRANSFORMATION_FILE_MACHINE.check(1, TF.REMOVED, TF.UNUSED)
    for status in TASK_FINAL:
        with pytest.raises(InvalidTransition, match="final state"):
            TASK_MACHINE.check(1, status, TK.RUNNING)


def test_transformation_groups_of_states() -> None:
    # Every state but Cleaning and Cleaned may be cleaned.
    assert frozenset(TransformationStatus) - {TS.CLEANING, TS.CLEANED} == CLEANABLE
    assert {TS.ACTIVE, TS.FLUSH, TS.COMPLETING} == CREATING_TASKS
    assert FLUSHING < CREATING_TASKS
    assert TS.STOPPED not in CREATING_TASKS
    assert TS.STOPPED in ATTACHING
    assert TS.NEW in ATTACHING
    assert not ATTACHING & {TS.COMPLETED, TS.CLEANING, TS.CLEANED}
    assert frozenset(TaskStatus) - TASK_FINAL == TASK_LIVE


def test_removed_is_reachable_from_every_file_state() -> None:
    # A file that leaves the catalog is marked Removed in every transformation, whatever it
    # was doing there.
    for status in TransFileStatus:
        if status is not TF.REMOVED:
            assert TRANSFORMATION_FILE_MACHINE.allowed(status, TF.REMOVED)


def test_hooks_are_declared_where_the_db_layer_needs_them() -> None:
    assert [h.name for h in TRANSFORMATION_MACHINE.hooks_for(TS.NEW, TS.ACTIVE)] == ["log"]
    assert [h.name for h in TRANSFORMATION_MACHINE.hooks_for(TS.CLEANING, TS.CLEANED)] == ["log"]

    def file_hooks(old: TransFileStatus, new: TransFileStatus) -> list[str]:
        return [h.name for h in TRANSFORMATION_FILE_MACHINE.hooks_for(old, new)]

    assert file_hooks(TF.ASSIGNED, TF.UNUSED) == ["clear_task", "return_log"]
    assert file_hooks(TF.ASSIGNED, TF.MAX_RESET) == ["return_log"]
    assert file_hooks(TF.MAX_RESET, TF.UNUSED) == ["clear_task", "reset_errors"]
    assert file_hooks(TF.PROBLEMATIC, TF.UNUSED) == ["clear_task", "reset_errors"]
    assert file_hooks(TF.UNUSED, TF.ASSIGNED) == []
    assert file_hooks(TF.ASSIGNED, TF.PROCESSED) == []

    def task_hooks(old: TaskStatus, new: TaskStatus) -> list[str]:
        return [h.name for h in TASK_MACHINE.hooks_for(old, new)]

    assert task_hooks(TK.CREATED, TK.SUBMITTED) == ["submit_time"]
    assert task_hooks(TK.SUBMITTED, TK.WAITING) == []
    for final in TASK_FINAL:
        assert task_hooks(TK.RUNNING, final) == ["end_time", "release_files"]


@pytest.mark.parametrize("status", list(JobStatus))
def test_task_mirrors_its_job(status: JobStatus) -> None:
    expected = {
        JobStatus.RECEIVED: TK.SUBMITTED,
        JobStatus.CHECKING: TK.SUBMITTED,
        JobStatus.STAGING: TK.SUBMITTED,
        JobStatus.WAITING: TK.WAITING,
        JobStatus.MATCHED: TK.WAITING,
        JobStatus.RESCHEDULED: TK.WAITING,
        JobStatus.RUNNING: TK.RUNNING,
        JobStatus.STALLED: TK.RUNNING,
        JobStatus.COMPLETING: TK.RUNNING,
        JobStatus.COMPLETED: TK.RUNNING,
        JobStatus.DONE: TK.DONE,
        JobStatus.FAILED: TK.FAILED,
        JobStatus.KILLED: TK.KILLED,
        JobStatus.DELETED: TK.KILLED,
    }
    assert task_status_for_job(status) is expected[status]


def test_task_mirrors_its_request() -> None:
    assert task_status_for_request(RequestStatus.WAITING) is TK.WAITING
    assert task_status_for_request(RequestStatus.ASSIGNED) is TK.RUNNING
    assert task_status_for_request(RequestStatus.DONE) is TK.DONE
    assert task_status_for_request(RequestStatus.FAILED) is TK.FAILED
    assert task_status_for_request(RequestStatus.CANCELED) is TK.KILLED


@pytest.mark.parametrize(
    ("current", "mirrored"), list(itertools.product(list(TaskStatus), list(TaskStatus)))
)
def test_mirror_steps_are_always_legal(current: TaskStatus, mirrored: TaskStatus) -> None:
    if mirrored is TK.CREATED:
        return  # no job or request status mirrors to Created
    steps = mirror_steps(current, mirrored)
    if current in TASK_FINAL or current == mirrored:
        assert steps == []  # a final task is never reopened
        return
    if mirrored is TK.SUBMITTED and current is not TK.CREATED:
        assert steps == []  # stale news: the task is past Submitted
        return
    state = current
    for step in steps:
        TASK_MACHINE.check(1, state, step.target)
        state = step.target
    assert state is mirrored


def test_mirror_from_created_goes_through_submitted() -> None:
    assert mirror_steps(TK.CREATED, TK.DONE) == [Change(TK.SUBMITTED), Change(TK.DONE)]
    assert mirror_steps(TK.CREATED, TK.SUBMITTED) == [Change(TK.SUBMITTED)]
    assert mirror_steps(TK.RUNNING, TK.WAITING) == [Change(TK.WAITING)]  # rescheduled


def test_file_outcome() -> None:
    assert file_outcome(TK.DONE, 2, 5).status is TF.PROCESSED
    assert file_outcome(TK.DONE, 2, 5).error_count == 2
    failed = file_outcome(TK.FAILED, 0, 3)
    assert (failed.status, failed.error_count) == (TF.UNUSED, 1)
    assert file_outcome(TK.FAILED, 1, 3).status is TF.UNUSED
    at_limit = file_outcome(TK.FAILED, 2, 3)
    assert (at_limit.status, at_limit.error_count) == (TF.MAX_RESET, 3)
    # A kill is not the file's failure: back to Unused, same count.
    killed = file_outcome(TK.KILLED, 2, 3)
    assert (killed.status, killed.error_count) == (TF.UNUSED, 2)
    # Each outcome is a legal step from Assigned.
    for task in TASK_FINAL:
        for count in range(4):
            TRANSFORMATION_FILE_MACHINE.check(1, TF.ASSIGNED, file_outcome(task, count, 3).status)
    for live in TASK_LIVE:
        with pytest.raises(ValueError, match="not final"):
            file_outcome(live, 0, 3)
