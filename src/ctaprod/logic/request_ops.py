"""Operation handlers of the request executor: one attempt at an operation's waiting files.

Each handler runs as the request's owner and returns, per file ID, ``None`` (done) or a
:class:`Failure`. Handlers are idempotent: what already happened (replica already there, file
already gone, job already in the wanted status) counts as done. The catalog and data
operations are imported inside the handlers (they live in other areas of ``logic``).
An operation without files (``SetJobStatus``) reports its outcome under the key ``0``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctaprod.core.errors import CtaprodError
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.requests import OperationType
from ctaprod.db.jobs import JobState
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs

log = logging.getLogger("ctaprod.requests")
SOURCE = "RequestExecutor"
OP_KEY = 0  # the outcome of an operation without files


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed; ``permanent`` failures are not retried."""

    error: str
    permanent: bool = False


@dataclass(frozen=True)
class Work:
    """An operation to attempt: its arguments and its waiting files (rows of request_files)."""

    request_id: int
    job_id: int | None
    type: OperationType
    arguments: Mapping[str, Any]
    files: Sequence[Mapping[str, Any]]


Outcome = dict[int, Failure | None]
Handler = Callable[[Context, Identity, Work], Outcome]


def run_operation(ctx: Context, ident: Identity, work: Work) -> Outcome:
    """One attempt at ``work``; a handler that breaks down fails every file it was given."""
    try:
        return HANDLERS[work.type](ctx, ident, work)
    except Exception as exc:  # a storage plugin or a bug: retried, never kills the agent
        log.exception("request %d: %s failed", work.request_id, work.type.value)
        failure = Failure(_text(exc))
        keys = [int(f["id"]) for f in work.files] or [OP_KEY]
        return dict.fromkeys(keys, failure)


def _text(exc: BaseException) -> str:
    if isinstance(exc, CtaprodError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _each(work: Work, attempt: Callable[[Mapping[str, Any]], Failure | None]) -> Outcome:
    """``attempt(file)`` for every file, domain errors recorded as that file's failure."""
    out: Outcome = {}
    for f in work.files:
        try:
            out[int(f["id"])] = attempt(f)
        except CtaprodError as exc:
            out[int(f["id"])] = Failure(exc.message)
    return out


def _replicas(ctx: Context, lfns: Sequence[str]) -> dict[str, list[str]]:
    """The SEs holding each LFN that is in the catalog."""
    from ctaprod.logic import catalog

    return {lfn: list(info.replicas) for lfn, info in catalog.get_files(ctx, lfns).items()}


def replicate_and_register(ctx: Context, ident: Identity, work: Work) -> Outcome:
    from ctaprod.logic import dataops

    targets: list[str] = list(work.arguments["target_ses"])
    source = work.arguments.get("source_se")
    known = _replicas(ctx, [f["lfn"] for f in work.files])

    def attempt(f: Mapping[str, Any]) -> Failure | None:
        lfn = f["lfn"]
        if lfn not in known:
            return Failure(f"{lfn} is not in the catalog")
        for se in targets:
            if se not in known[lfn]:
                dataops.replicate_and_register(ctx, ident, lfn, se, source)
        return None

    return _each(work, attempt)


def register_file(ctx: Context, ident: Identity, work: Work) -> Outcome:
    from ctaprod.core.catalog import FileRegistration
    from ctaprod.logic import catalog

    args = work.arguments
    common_meta: Mapping[str, Any] = args.get("metadata") or {}
    per_meta: Mapping[str, Any] = args.get("file_metadata") or {}
    per_parents: Mapping[str, Any] = args.get("file_parents") or {}
    regs = {
        int(f["id"]): FileRegistration(
            lfn=f["lfn"],
            size=f["size"],
            checksum=f["checksum"],
            guid=f["guid"],
            se=args["se"],
            metadata={**common_meta, **per_meta.get(f["lfn"], {})},
            parents=list(per_parents.get(f["lfn"], args.get("parents") or [])),
        )
        for f in work.files
    }
    try:  # all at once; if one is refused, file by file to know which
        catalog.register_files(ctx, ident, list(regs.values()))
        return dict.fromkeys(regs)
    except CtaprodError:
        if len(regs) == 1:
            raise
    return _each(work, lambda f: _none(catalog.register_files(ctx, ident, [regs[int(f["id"])]])))


def register_replica(ctx: Context, ident: Identity, work: Work) -> Outcome:
    from ctaprod.core.catalog import ReplicaRef
    from ctaprod.logic import catalog

    se = work.arguments["se"]
    known = _replicas(ctx, [f["lfn"] for f in work.files])
    todo = [f for f in work.files if se not in known.get(f["lfn"], ())]
    out: Outcome = {int(f["id"]): None for f in work.files if f not in todo}
    refs = {int(f["id"]): ReplicaRef(lfn=f["lfn"], se=se) for f in todo}
    if not refs:
        return out
    try:
        catalog.add_replicas(ctx, ident, list(refs.values()))
        return {**out, **dict.fromkeys(refs)}
    except CtaprodError:
        if len(refs) == 1:
            raise
    rest = Work(work.request_id, work.job_id, work.type, work.arguments, todo)
    return {
        **out,
        **_each(rest, lambda f: _none(catalog.add_replicas(ctx, ident, [refs[int(f["id"])]]))),
    }


def remove_file(ctx: Context, ident: Identity, work: Work) -> Outcome:
    from ctaprod.logic import dataops

    known = _replicas(ctx, [f["lfn"] for f in work.files])

    def attempt(f: Mapping[str, Any]) -> Failure | None:
        if f["lfn"] in known:  # else already removed
            dataops.remove_file(ctx, ident, f["lfn"])
        return None

    return _each(work, attempt)


def remove_replica(ctx: Context, ident: Identity, work: Work) -> Outcome:
    from ctaprod.logic import dataops

    se = work.arguments["se"]
    known = _replicas(ctx, [f["lfn"] for f in work.files])

    def attempt(f: Mapping[str, Any]) -> Failure | None:
        lfn = f["lfn"]
        held = known.get(lfn, [])
        if se not in held:
            return None  # already removed (or the file is gone)
        if len(held) == 1:
            return Failure(f"{lfn}: {se} holds its last replica; not removed", permanent=True)
        dataops.remove_replica(ctx, ident, lfn, se)
        return None

    return _each(work, attempt)


def set_job_status(ctx: Context, ident: Identity, work: Work) -> Outcome:
    """Move the request's job to ``status`` once its payload has finished (Completed)."""
    target = JobStatus(work.arguments["status"])
    minor = str(work.arguments.get("minor_status", ""))
    app = work.arguments.get("application_status")
    job_id = work.job_id
    if job_id is None:
        return {OP_KEY: Failure("the request has no job", permanent=True)}
    failure: Failure | None = None

    def decide(state: JobState) -> list[Step] | None:
        nonlocal failure
        if state.status is target:
            return None  # already there
        if state.status in FINAL_STATES:
            failure = Failure(f"job {job_id} is {state.status.value}", permanent=True)
            return None
        if state.status is not JobStatus.COMPLETED:
            failure = Failure(f"job {job_id} is {state.status.value}, not yet Completed")
            return None
        return [Step(target, minor, app)]  # end_time was set when it became Completed

    with ctx.db.write() as conn:
        if not transition_jobs(ctx, conn, [job_id], decide, SOURCE, strict=False).states:
            return {OP_KEY: Failure(f"no job {job_id}", permanent=True)}
    return {OP_KEY: failure}


def _none(_: object) -> None:
    return None


HANDLERS: dict[OperationType, Handler] = {
    OperationType.REPLICATE_AND_REGISTER: replicate_and_register,
    OperationType.REGISTER_FILE: register_file,
    OperationType.REGISTER_REPLICA: register_replica,
    OperationType.REMOVE_FILE: remove_file,
    OperationType.REMOVE_REPLICA: remove_replica,
    OperationType.SET_JOB_STATUS: set_job_status,
}
