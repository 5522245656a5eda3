"""The state machines of the transformation system: transformations, their files, their tasks.

DIRAC's names and meanings (its TransformationSystem), so that CTA operators feel at home; the
arrows are explicit and anything else is refused (DIRAC silently replaced illegal changes).

**Transformation.** New until started; Active creates and submits tasks; Stopped creates and
submits nothing (running tasks still report); Flush creates the last, smaller groups (on demand,
or because the input is complete) and then goes back to Active or on to Completing; Completing:
every input file is in a task or final, waiting for the last tasks (files returned by failed
tasks are still regrouped, flushing); Completed: nothing left to do (an ``extend`` reopens it to
Active); Cleaning: its jobs, requests and outputs are being removed; Cleaned is final.

**Transformation file** (one row per file and transformation). Unused waits for a task;
Assigned is held by one live task; Processed: its task ended Done; a failed task returns its
files to Unused with ErrorCount + 1, or to MaxReset at the transformation's limit (no more
retries until an operator resets it to Unused); Problematic: the file cannot be processed as
it is (no replica, unreadable), until an operator resets it; Removed: the file left the catalog
(final, from any state). The error count is written by the caller with the step
(:func:`file_outcome` computes it), because a task killed by an operator is not the file's fault
while a failed one is: a hook could not tell them apart.

**Task.** Created by the task-creation agent, Submitted once its job (or request) exists, then
mirroring it (:func:`task_status_for_job`, :func:`task_status_for_request`): Waiting, Running,
and the final Done, Failed, Killed. A final task is never reopened: its files have moved on (to
Processed, or back to Unused and perhaps into another task), so a job rescheduled by hand after
its task failed must not be followed (the mirror functions' callers drop such changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ctaprod.core.job_states import JobStatus
from ctaprod.core.requests import RequestStatus
from ctaprod.core.statemachine import Change, Hook, StateMachine, on_enter, table

__all__ = [
    "ATTACHING",
    "CLEANABLE",
    "CREATING_TASKS",
    "FILE_FINAL",
    "FLUSHING",
    "TASK_FINAL",
    "TASK_LIVE",
    "TASK_MACHINE",
    "TRANSFORMATION_FILE_MACHINE",
    "TRANSFORMATION_MACHINE",
    "TRANS_FINAL",
    "FileOutcome",
    "TaskStatus",
    "TransFileStatus",
    "TransformationStatus",
    "file_outcome",
    "mirror_steps",
    "task_status_for_job",
    "task_status_for_request",
]


class TransformationStatus(StrEnum):
    NEW = "New"
    ACTIVE = "Active"
    STOPPED = "Stopped"
    FLUSH = "Flush"
    COMPLETING = "Completing"
    COMPLETED = "Completed"
    CLEANING = "Cleaning"
    CLEANED = "Cleaned"


class TransFileStatus(StrEnum):
    UNUSED = "Unused"
    ASSIGNED = "Assigned"
    PROCESSED = "Processed"
    MAX_RESET = "MaxReset"
    PROBLEMATIC = "Problematic"
    REMOVED = "Removed"


class TaskStatus(StrEnum):
    CREATED = "Created"
    SUBMITTED = "Submitted"
    WAITING = "Waiting"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    KILLED = "Killed"


TS, TF, TK = TransformationStatus, TransFileStatus, TaskStatus

TRANS_FINAL = frozenset({TS.CLEANED})
# Where the task-creation and submission agents work (Stopped: nothing new is created).
CREATING_TASKS = frozenset({TS.ACTIVE, TS.FLUSH, TS.COMPLETING})
# Where task creation also makes the last, smaller groups: the input is (declared) complete.
FLUSHING = frozenset({TS.FLUSH, TS.COMPLETING})
# Where newly matching catalog files are attached as Unused: a transformation created but not
# started, or stopped, must not miss files registered meanwhile. Completed ones no longer look
# (an ``extend`` or a ``rescan`` brings late files in).
ATTACHING = frozenset({TS.NEW, TS.ACTIVE, TS.STOPPED, TS.FLUSH, TS.COMPLETING})

TRANSFORMATION_MACHINE: StateMachine[TransformationStatus] = StateMachine(
    entity="transformation",
    transitions=table(
        [
            (TS.NEW, [TS.ACTIVE, TS.CLEANING]),
            (TS.ACTIVE, [TS.STOPPED, TS.FLUSH, TS.COMPLETING, TS.CLEANING]),
            (TS.STOPPED, [TS.ACTIVE, TS.CLEANING]),
            # Back to Active after an on-demand flush; on to Completing when the input is over.
            (TS.FLUSH, [TS.ACTIVE, TS.COMPLETING, TS.STOPPED, TS.CLEANING]),
            # Back to Active when extended or restarted (e.g. its input turned out incomplete).
            (TS.COMPLETING, [TS.COMPLETED, TS.ACTIVE, TS.STOPPED, TS.CLEANING]),
            (TS.COMPLETED, [TS.ACTIVE, TS.CLEANING]),
            (TS.CLEANING, [TS.CLEANED]),
            (TS.CLEANED, []),
        ]
    ),
    final=TRANS_FINAL,
    # The transformation log: every change, who made it and when.
    hooks=(Hook("log"),),
)
CLEANABLE = TRANSFORMATION_MACHINE.sources(TS.CLEANING)

FILE_FINAL = frozenset({TF.REMOVED})
TRANSFORMATION_FILE_MACHINE: StateMachine[TransFileStatus] = StateMachine(
    entity="transformation file",
    transitions=table(
        [
            (TF.UNUSED, [TF.ASSIGNED, TF.PROBLEMATIC, TF.REMOVED]),
            (TF.ASSIGNED, [TF.UNUSED, TF.PROCESSED, TF.MAX_RESET, TF.PROBLEMATIC, TF.REMOVED]),
            # Processed stays Processed unless the file leaves the catalog.
            (TF.PROCESSED, [TF.REMOVED]),
            (TF.MAX_RESET, [TF.UNUSED, TF.REMOVED]),  # an operator's reset
            (TF.PROBLEMATIC, [TF.UNUSED, TF.REMOVED]),  # an operator's reset
            (TF.REMOVED, []),
        ]
    ),
    final=FILE_FINAL,
    hooks=(
        # An Unused file belongs to no task: the task column is cleared.
        on_enter("clear_task", [TF.UNUSED]),
        # Why a file came back from its task (the task's failure reason, or a kill): the
        # reasons are what a MaxReset file is reported with.
        on_enter("return_log", [TF.UNUSED, TF.MAX_RESET], leaving=[TF.ASSIGNED]),
        # An operator's reset gives the file a fresh error count.
        on_enter("reset_errors", [TF.UNUSED], leaving=[TF.MAX_RESET, TF.PROBLEMATIC]),
    ),
)

TASK_FINAL = frozenset({TK.DONE, TK.FAILED, TK.KILLED})
# A live task holds its files (Assigned): no other task of the transformation may take them.
TASK_LIVE = frozenset(TaskStatus) - TASK_FINAL
TASK_MACHINE: StateMachine[TaskStatus] = StateMachine(
    entity="task",
    transitions=table(
        [
            # Failed: the job (or request) was refused at submission; Killed: the
            # transformation was cleaned, or the task stopped, before submission.
            (TK.CREATED, [TK.SUBMITTED, TK.FAILED, TK.KILLED]),
            (TK.SUBMITTED, [TK.WAITING, TK.RUNNING, TK.DONE, TK.FAILED, TK.KILLED]),
            (TK.WAITING, [TK.RUNNING, TK.DONE, TK.FAILED, TK.KILLED]),
            # Back to Waiting: the job was rescheduled (within the job system's limits).
            (TK.RUNNING, [TK.WAITING, TK.DONE, TK.FAILED, TK.KILLED]),
            (TK.DONE, []),
            (TK.FAILED, []),
            (TK.KILLED, []),
        ]
    ),
    final=TASK_FINAL,
    hooks=(
        on_enter("submit_time", [TK.SUBMITTED]),
        on_enter("end_time", TASK_FINAL),
        # The task's files follow its outcome (file_outcome), for every caller, in the same
        # transaction: no file stays Assigned to a finished task.
        on_enter("release_files", TASK_FINAL),
    ),
)

_JOB_TO_TASK: dict[JobStatus, TaskStatus] = {
    JobStatus.RECEIVED: TK.SUBMITTED,
    JobStatus.CHECKING: TK.SUBMITTED,
    JobStatus.STAGING: TK.SUBMITTED,
    JobStatus.WAITING: TK.WAITING,
    JobStatus.MATCHED: TK.WAITING,
    JobStatus.RESCHEDULED: TK.WAITING,
    JobStatus.RUNNING: TK.RUNNING,
    JobStatus.STALLED: TK.RUNNING,
    JobStatus.COMPLETING: TK.RUNNING,
    # Payload over, failover requests pending: its outputs are not all registered yet.
    JobStatus.COMPLETED: TK.RUNNING,
    JobStatus.DONE: TK.DONE,
    JobStatus.FAILED: TK.FAILED,
    JobStatus.KILLED: TK.KILLED,
    JobStatus.DELETED: TK.KILLED,
}
_REQUEST_TO_TASK: dict[RequestStatus, TaskStatus] = {
    RequestStatus.WAITING: TK.WAITING,
    RequestStatus.ASSIGNED: TK.RUNNING,
    RequestStatus.DONE: TK.DONE,
    # A request Failed may be retried by hand; its task has moved on (see module docstring).
    RequestStatus.FAILED: TK.FAILED,
    RequestStatus.CANCELED: TK.KILLED,
}


def task_status_for_job(status: JobStatus) -> TaskStatus:
    """The task status that mirrors its job's status."""
    return _JOB_TO_TASK[status]


def task_status_for_request(status: RequestStatus) -> TaskStatus:
    """The task status that mirrors its request's status."""
    return _REQUEST_TO_TASK[status]


def mirror_steps(current: TaskStatus, mirrored: TaskStatus) -> list[Change[TaskStatus]]:
    """The steps that bring a task from ``current`` to the ``mirrored`` status of its job or
    request: none when it is there already or final (a final task is never reopened), else
    one step (Created goes through Submitted first: the job exists, so it was submitted).
    Submitted (a job still being checked) is stale news for a task that is past it."""
    if current == mirrored or current in TASK_FINAL:
        return []
    if mirrored is TK.SUBMITTED and current is not TK.CREATED:
        return []
    if current is TK.CREATED and mirrored is not TK.SUBMITTED:
        return [Change(TK.SUBMITTED), Change(mirrored)]
    return [Change(mirrored)]


@dataclass(frozen=True)
class FileOutcome:
    """What a task's end does to one of its files: the step and the new error count."""

    status: TransFileStatus
    error_count: int


def file_outcome(task: TaskStatus, error_count: int, max_errors: int) -> FileOutcome:
    """A file's next state when its task ends: Done -> Processed; Failed -> Unused with one
    more error, or MaxReset once the errors reach ``max_errors``; Killed (by an operator or
    the cleaning) -> Unused with its count unchanged: a kill is not the file's failure."""
    if task is TK.DONE:
        return FileOutcome(TF.PROCESSED, error_count)
    if task is TK.KILLED:
        return FileOutcome(TF.UNUSED, error_count)
    if task is TK.FAILED:
        errors = error_count + 1
        return FileOutcome(TF.MAX_RESET if errors >= max_errors else TF.UNUSED, errors)
    raise ValueError(f"task status {task.value} is not final: its files stay Assigned")
