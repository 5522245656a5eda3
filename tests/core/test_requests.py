"""Request state machines and spec checks (ctaprod.core.requests)."""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any

import pytest

from ctaprod.core.errors import InvalidInput, InvalidTransition
from ctaprod.core.requests import (
    FILE_MACHINE,
    OPERATION_MACHINE,
    REQUEST_MACHINE,
    FileStatus,
    OperationStatus,
    RequestSpec,
    RequestStatus,
    backoff_seconds,
    check_spec,
)
from ctaprod.core.statemachine import StateMachine

R, Op, F = RequestStatus, OperationStatus, FileStatus

ARROWS: list[tuple[StateMachine[Any], dict[Any, set[Any]]]] = [
    (
        REQUEST_MACHINE,
        {
            R.WAITING: {R.ASSIGNED, R.CANCELED},
            R.ASSIGNED: {R.WAITING, R.DONE, R.FAILED, R.CANCELED},
            R.FAILED: {R.WAITING},
            R.DONE: set(),
            R.CANCELED: set(),
        },
    ),
    (
        OPERATION_MACHINE,
        {
            Op.QUEUED: {Op.WAITING, Op.CANCELED},
            Op.WAITING: {Op.DONE, Op.FAILED, Op.CANCELED},
            Op.FAILED: {Op.WAITING},
            Op.DONE: set(),
            Op.CANCELED: set(),
        },
    ),
    (FILE_MACHINE, {F.WAITING: {F.DONE, F.FAILED}, F.FAILED: {F.WAITING}, F.DONE: set()}),
]


@pytest.mark.parametrize(("machine", "arrows"), ARROWS, ids=lambda v: getattr(v, "entity", ""))
def test_every_pair_of_states(machine: StateMachine[Any], arrows: dict[Any, set[Any]]) -> None:
    states: list[StrEnum] = list(arrows)
    for a, b in itertools.product(states, states):
        if b in arrows[a]:
            machine.check(1, a, b)
        else:
            with pytest.raises(InvalidTransition, match=f"is {a.value}: cannot go to {b.value}"):
                machine.check(1, a, b)


def test_final_states_say_so() -> None:
    with pytest.raises(InvalidTransition, match=r"request 7 is Done: cannot go to Waiting \(final"):
        REQUEST_MACHINE.check(7, R.DONE, R.WAITING)


def _spec(*ops: dict[str, Any], job_id: int | None = None) -> RequestSpec:
    return RequestSpec.model_validate({"name": "t", "job_id": job_id, "operations": list(ops)})


def _bad(spec: RequestSpec, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        check_spec(spec)


def test_bad_specs_are_refused_with_a_reason() -> None:
    f = [{"lfn": "/vo/a"}]
    _bad(_spec(), "at least one operation")
    _bad(_spec({"type": "Teleport", "files": f}), "operation 1: unknown type 'Teleport'; known:")
    _bad(_spec({"type": "RemoveReplica", "files": f}), r"operation 1 \(RemoveReplica\): missing")
    _bad(_spec({"type": "RemoveFile", "files": f, "arguments": {"se": "X"}}), "unknown argument se")
    _bad(_spec({"type": "RemoveFile"}), "needs at least one file")
    _bad(_spec({"type": "RemoveFile", "files": [{"lfn": "/vo/../x"}]}), "invalid LFN '/vo/../x'")
    _bad(_spec({"type": "RemoveFile", "files": f + f}), "/vo/a given twice")
    _bad(_spec({"type": "SetJobStatus", "arguments": {"status": "Done"}}), "has no job_id")
    _bad(
        _spec({"type": "SetJobStatus", "arguments": {"status": "Happy"}}, job_id=1),
        "'Happy' is not a job status",
    )
    _bad(
        _spec({"type": "ReplicateAndRegister", "files": f, "arguments": {"target_ses": []}}),
        "target_ses must be a non-empty list",
    )
    _bad(
        _spec({"type": "RegisterFile", "files": f, "arguments": {"se": "DISK"}}),
        "/vo/a needs a size and a checksum",
    )
    _bad(
        _spec(
            {"type": "RemoveFile", "files": f},
            {"type": "RegisterReplica", "files": f, "arguments": {"se": 3}},
        ),
        r"operation 2 \(RegisterReplica\): se must be an SE name",
    )


def test_register_file_folds_per_file_values_into_the_arguments() -> None:
    spec = check_spec(
        _spec(
            {
                "type": "RegisterFile",
                "arguments": {"se": "DISK", "metadata": {"a": 1}, "parents": ["LFN:/vo/p"]},
                "files": [
                    {"lfn": "LFN:/vo/a", "size": 3, "checksum": "ABC", "metadata": {"b": 2}},
                    {"lfn": "/vo/b", "size": 4, "checksum": "0000000d", "parents": ["/vo/q"]},
                ],
            }
        )
    )
    [op] = spec.operations
    assert [(f.lfn, f.checksum) for f in op.files] == [("/vo/a", "00000abc"), ("/vo/b", "0000000d")]
    assert op.arguments == {
        "se": "DISK",
        "metadata": {"a": 1},
        "parents": ["/vo/p"],
        "file_metadata": {"/vo/a": {"b": 2}},
        "file_parents": {"/vo/b": ["/vo/q"]},
    }


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 30, 200) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 200, 200]
    assert backoff_seconds(10_000, 30, 3600) == 3600
