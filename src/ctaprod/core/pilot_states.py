"""The pilot state machine."""

from __future__ import annotations

from enum import StrEnum

from ctaprod.core.statemachine import Hook, StateMachine, table


class PilotStatus(StrEnum):
    SUBMITTED = "Submitted"
    WAITING = "Waiting"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    ABORTED = "Aborted"
    LOST = "Lost"


P = PilotStatus
PILOT_FINAL = frozenset({P.DONE, P.FAILED, P.ABORTED, P.LOST})
PILOT_ALIVE = frozenset({P.SUBMITTED, P.WAITING, P.RUNNING})

PILOT_MACHINE: StateMachine[PilotStatus] = StateMachine(
    entity="pilot",
    transitions=table(
        [
            (P.SUBMITTED, [P.WAITING, P.RUNNING, P.DONE, P.FAILED, P.ABORTED, P.LOST]),
            (P.WAITING, [P.RUNNING, P.DONE, P.FAILED, P.ABORTED, P.LOST]),
            (P.RUNNING, [P.DONE, P.FAILED, P.ABORTED, P.LOST]),
            # A pilot the batch system forgot may still report in after all.
            (P.LOST, [P.RUNNING, P.DONE, P.FAILED]),
            (P.DONE, []),
            (P.FAILED, []),
            (P.ABORTED, []),
        ]
    ),
    final=frozenset({P.DONE, P.FAILED, P.ABORTED}),
    # Any change of status is news of the pilot: the "unknown to its CE since" count ends.
    hooks=(Hook("known_again"),),
)
