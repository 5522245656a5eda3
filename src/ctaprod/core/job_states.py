"""The job state machine (DIRAC's names so that CTA operators feel at home) and its hooks.

The hooks say what goes with a transition, for every caller (``logic.job_status``
implements them): the end time on entering a state where the payload is over, leaving and
entering the task queues with Waiting, and a history row for every change.
"""

from __future__ import annotations

from enum import StrEnum

from ctaprod.core.statemachine import Hook, StateMachine, on_enter, on_leave, table


class JobStatus(StrEnum):
    RECEIVED = "Received"
    CHECKING = "Checking"
    STAGING = "Staging"
    WAITING = "Waiting"
    MATCHED = "Matched"
    RUNNING = "Running"
    STALLED = "Stalled"
    COMPLETING = "Completing"
    COMPLETED = "Completed"
    DONE = "Done"
    FAILED = "Failed"
    RESCHEDULED = "Rescheduled"
    KILLED = "Killed"
    DELETED = "Deleted"


J = JobStatus
FINAL_STATES = frozenset({J.DONE, J.FAILED, J.KILLED, J.DELETED})
# States in which a job holds (or may hold) a pilot's worker slot.
ACTIVE_STATES = frozenset({J.MATCHED, J.RUNNING, J.STALLED, J.COMPLETING})
# States from which a user may ask for a reschedule.
RESCHEDULABLE = frozenset({J.MATCHED, J.RUNNING, J.STALLED, J.COMPLETING, J.FAILED, J.KILLED})
# States in which the payload is over: entering one (from another state) sets the end time.
ENDED = FINAL_STATES | {J.COMPLETED}
KILLABLE = frozenset(
    {J.RECEIVED, J.CHECKING, J.STAGING, J.WAITING, J.MATCHED, J.RUNNING, J.STALLED, J.COMPLETING}
)

JOB_MACHINE: StateMachine[JobStatus] = StateMachine(
    entity="job",
    transitions=table(
        [
            (J.RECEIVED, [J.CHECKING, J.FAILED, J.KILLED, J.DELETED]),
            (J.CHECKING, [J.WAITING, J.STAGING, J.FAILED, J.KILLED, J.DELETED]),
            (J.STAGING, [J.WAITING, J.FAILED, J.KILLED, J.DELETED]),
            (J.WAITING, [J.MATCHED, J.FAILED, J.KILLED, J.DELETED]),
            (
                J.MATCHED,
                [J.RUNNING, J.STALLED, J.FAILED, J.KILLED, J.RESCHEDULED, J.COMPLETING, J.DONE],
            ),
            (
                J.RUNNING,
                [J.COMPLETING, J.COMPLETED, J.DONE, J.FAILED, J.STALLED, J.KILLED, J.RESCHEDULED],
            ),
            (
                J.STALLED,
                [J.RUNNING, J.COMPLETING, J.COMPLETED, J.DONE, J.FAILED, J.KILLED, J.RESCHEDULED],
            ),
            (J.COMPLETING, [J.COMPLETED, J.DONE, J.FAILED, J.STALLED, J.KILLED, J.RESCHEDULED]),
            (J.COMPLETED, [J.DONE, J.FAILED, J.KILLED]),
            (J.RESCHEDULED, [J.WAITING, J.FAILED, J.KILLED, J.DELETED]),
            (J.FAILED, [J.RESCHEDULED, J.DELETED]),
            (J.KILLED, [J.RESCHEDULED, J.DELETED]),
            (J.DONE, [J.DELETED]),
            (J.DELETED, []),
        ]
    ),
    final=FINAL_STATES,
    hooks=(
        # A job that ended keeps its first end time (Completed -> Done, Killed -> Deleted).
        on_enter("end_time", ENDED, leaving=frozenset(JobStatus) - ENDED),
        # Only Waiting jobs are in a task queue (the matcher's claim takes its job out itself).
        on_leave("dequeue", [J.WAITING]),
        on_enter("enqueue", [J.WAITING]),
        Hook("history"),
        # A transformation task mirrors its job (core.trans_states). Not on entering Matched
        # (the task is Waiting either way; the matcher's hot path does not pay for it), nor
        # Received/Checking (the submission marks its task Submitted itself).
        on_enter("task", frozenset(JobStatus) - {J.MATCHED, J.RECEIVED, J.CHECKING}),
    ),
)
