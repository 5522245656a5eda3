"""Requests (the failover path): state machines, operation types, models and spec checks.

A request is an ordered list of operations that must eventually happen; each operation acts
on files (an LFN each, with its own status and attempt counter), except ``SetJobStatus``
which acts on the request's job. Arguments per operation type (``ARGUMENTS``):

- ``ReplicateAndRegister``: ``target_ses`` (list of SE names), optional ``source_se``;
- ``RegisterFile``: ``se``; files carry ``size`` and ``checksum`` (``guid`` optional);
  metadata and parents common to all files (``metadata``, ``parents``) and/or per file
  (``file_metadata`` / ``file_parents`` keyed by LFN, or the file's own ``metadata`` and
  ``parents``; the per-file values are folded into the arguments when the request is made);
- ``RegisterReplica``, ``RemoveReplica``: ``se``;
- ``RemoveFile``: no arguments;
- ``SetJobStatus``: ``status`` (a job status, e.g. ``Done``), optional ``minor_status`` and
  ``application_status``; no files; the request must have a ``job_id``.

The models are loose on purpose (``type: str``, ``arguments: dict``) so that bad content is
refused by :func:`check_spec` with an ``InvalidInput`` naming the operation and the problem
(HTTP 400), not by the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from ctaprod.core.catalog import check_adler32
from ctaprod.core.errors import InvalidInput
from ctaprod.core.job_states import JobStatus
from ctaprod.core.lfn import check_lfn
from ctaprod.core.statemachine import Hook, StateMachine, on_leave, table

MAX_OPERATIONS = 100
MAX_FILES = 10_000
MAX_ERROR = 2048  # the error columns' width


class RequestStatus(StrEnum):
    WAITING = "Waiting"
    ASSIGNED = "Assigned"
    DONE = "Done"
    FAILED = "Failed"
    CANCELED = "Canceled"


class OperationStatus(StrEnum):
    QUEUED = "Queued"  # an earlier operation is not Done yet
    WAITING = "Waiting"
    DONE = "Done"
    FAILED = "Failed"
    CANCELED = "Canceled"


class FileStatus(StrEnum):
    WAITING = "Waiting"
    DONE = "Done"
    FAILED = "Failed"


R, Op, F = RequestStatus, OperationStatus, FileStatus

REQUEST_MACHINE: StateMachine[RequestStatus] = StateMachine(
    entity="request",
    transitions=table(
        [
            (R.WAITING, [R.ASSIGNED, R.CANCELED]),
            (R.ASSIGNED, [R.WAITING, R.DONE, R.FAILED, R.CANCELED]),
            (R.FAILED, [R.WAITING]),  # retry
            (R.DONE, []),
            (R.CANCELED, []),
        ]
    ),
    final=frozenset({R.DONE, R.CANCELED}),
    # A request that is no longer Assigned is held by nobody: its claim's lease ends.
    hooks=(
        on_leave("end_lease", [R.ASSIGNED]),
        # A transformation task mirrors its request (core.trans_states).
        Hook("task"),
    ),
)
OPERATION_MACHINE: StateMachine[OperationStatus] = StateMachine(
    entity="operation",
    transitions=table(
        [
            (Op.QUEUED, [Op.WAITING, Op.CANCELED]),
            (Op.WAITING, [Op.DONE, Op.FAILED, Op.CANCELED]),
            (Op.FAILED, [Op.WAITING]),  # retry
            (Op.DONE, []),
            (Op.CANCELED, []),
        ]
    ),
    final=frozenset({Op.DONE, Op.CANCELED}),
)
FILE_MACHINE: StateMachine[FileStatus] = StateMachine(
    entity="request file",
    transitions=table(
        [
            (F.WAITING, [F.DONE, F.FAILED]),
            (F.FAILED, [F.WAITING]),  # retry
            (F.DONE, []),
        ]
    ),
    final=frozenset({F.DONE}),
)
CANCELABLE = REQUEST_MACHINE.sources(R.CANCELED)


class OperationType(StrEnum):
    REPLICATE_AND_REGISTER = "ReplicateAndRegister"
    REGISTER_FILE = "RegisterFile"
    REGISTER_REPLICA = "RegisterReplica"
    REMOVE_FILE = "RemoveFile"
    REMOVE_REPLICA = "RemoveReplica"
    SET_JOB_STATUS = "SetJobStatus"


T = OperationType
# Per type: (required arguments, optional arguments).
ARGUMENTS: dict[OperationType, tuple[frozenset[str], frozenset[str]]] = {
    T.REPLICATE_AND_REGISTER: (frozenset({"target_ses"}), frozenset({"source_se"})),
    T.REGISTER_FILE: (
        frozenset({"se"}),
        frozenset({"metadata", "parents", "file_metadata", "file_parents"}),
    ),
    T.REGISTER_REPLICA: (frozenset({"se"}), frozenset()),
    T.REMOVE_FILE: (frozenset(), frozenset()),
    T.REMOVE_REPLICA: (frozenset({"se"}), frozenset()),
    T.SET_JOB_STATUS: (frozenset({"status"}), frozenset({"minor_status", "application_status"})),
}
FILELESS = frozenset({T.SET_JOB_STATUS})


class RequestFile(BaseModel):
    """A file of an operation: its LFN, and for ``RegisterFile`` what to register."""

    lfn: str
    size: int | None = Field(None, ge=0)
    checksum: str | None = None
    guid: str | None = Field(None, max_length=36)
    metadata: dict[str, Any] | None = None
    parents: list[str] | None = None


class OperationSpec(BaseModel):
    type: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    files: list[RequestFile] = Field(default_factory=list, max_length=MAX_FILES)


class RequestSpec(BaseModel):
    """A request to create: operations run in the order given."""

    name: str = Field("", max_length=255)
    job_id: int | None = None
    operations: list[OperationSpec] = Field(default_factory=list, max_length=MAX_OPERATIONS)


class RequestFileInfo(BaseModel):
    id: int
    lfn: str
    status: FileStatus
    attempts: int
    error: str = ""
    size: int | None = None
    checksum: str | None = None
    guid: str | None = None


class OperationInfo(BaseModel):
    op_id: int
    position: int
    type: str
    status: OperationStatus
    arguments: dict[str, Any]
    attempts: int
    error: str = ""
    last_update: datetime
    files: list[RequestFileInfo] = Field(default_factory=list)


class RequestSummary(BaseModel):
    request_id: int
    name: str
    owner: str
    owner_group: str
    job_id: int | None
    status: RequestStatus
    created: datetime
    last_update: datetime
    not_before: datetime
    assigned_by: str = ""
    error: str = ""
    lease_until: datetime | None = None  # while Assigned: when the executor's claim expires


class RequestInfo(RequestSummary):
    operations: list[OperationInfo] = Field(default_factory=list)


class RequestPage(BaseModel):
    requests: list[RequestSummary]
    next_cursor: int | None = None


class RequestId(BaseModel):
    request_id: int


def check_spec(spec: RequestSpec) -> RequestSpec:
    """The spec with LFNs, checksums and per-file values normalized; ``InvalidInput`` naming
    the operation (1-based) and what is wrong otherwise."""
    if not spec.operations:
        raise InvalidInput("a request needs at least one operation")
    return spec.model_copy(
        update={"operations": [_check_op(i, op, spec) for i, op in enumerate(spec.operations, 1)]}
    )


def _check_op(n: int, op: OperationSpec, spec: RequestSpec) -> OperationSpec:
    where = f"operation {n} ({op.type})"
    try:
        kind = OperationType(op.type)
    except ValueError:
        known = ", ".join(t.value for t in OperationType)
        raise InvalidInput(
            f"operation {n}: unknown type {op.type!r}; known: {known}", operation=n
        ) from None
    required, optional = ARGUMENTS[kind]
    missing = sorted(required - op.arguments.keys())
    if missing:
        raise InvalidInput(f"{where}: missing argument {', '.join(missing)}", operation=n)
    unknown = sorted(op.arguments.keys() - required - optional)
    if unknown:
        raise InvalidInput(f"{where}: unknown argument {', '.join(unknown)}", operation=n)
    args = dict(op.arguments)
    if kind in FILELESS:
        if op.files:
            raise InvalidInput(f"{where}: takes no files", operation=n)
        if spec.job_id is None:
            raise InvalidInput(f"{where}: the request has no job_id", operation=n)
        return op.model_copy(update={"arguments": _job_status_args(where, args)})
    if not op.files:
        raise InvalidInput(f"{where}: needs at least one file", operation=n)
    files = [f.model_copy(update={"lfn": _lfn(where, f.lfn)}) for f in op.files]
    seen: set[str] = set()
    for f in files:
        if f.lfn in seen:
            raise InvalidInput(f"{where}: {f.lfn} given twice", operation=n)
        seen.add(f.lfn)
    if kind is T.REPLICATE_AND_REGISTER:
        targets = args["target_ses"]
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets:
            raise InvalidInput(f"{where}: target_ses must be a non-empty list of SE names")
        args["target_ses"] = [_se(where, "target_ses", t) for t in targets]
        if args.get("source_se") is not None:
            args["source_se"] = _se(where, "source_se", args["source_se"])
    else:
        if "se" in required:
            args["se"] = _se(where, "se", args["se"])
    if kind is T.REGISTER_FILE:
        files = [_registration(where, f) for f in files]
        args = _fold_per_file(where, args, files)
    return op.model_copy(update={"arguments": args, "files": files})


def _lfn(where: str, lfn: str) -> str:
    try:
        return check_lfn(lfn)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", **exc.detail) from None


def _se(where: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidInput(f"{where}: {name} must be an SE name, not {value!r}")
    return value


def _job_status_args(where: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        args["status"] = JobStatus(args["status"]).value
    except ValueError:
        raise InvalidInput(f"{where}: {args['status']!r} is not a job status") from None
    for key in ("minor_status", "application_status"):
        if key in args and not isinstance(args[key], str):
            raise InvalidInput(f"{where}: {key} must be a string")
    return args


def _registration(where: str, f: RequestFile) -> RequestFile:
    if f.size is None or f.checksum is None:
        raise InvalidInput(f"{where}: {f.lfn} needs a size and a checksum to be registered")
    try:
        checksum = check_adler32(f.checksum)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {f.lfn}: {exc}") from None
    parents = [_lfn(where, p) for p in f.parents] if f.parents is not None else None
    return f.model_copy(update={"checksum": checksum, "parents": parents})


def _fold_per_file(where: str, args: dict[str, Any], files: list[RequestFile]) -> dict[str, Any]:
    """Move the files' own metadata and parents into ``file_metadata`` / ``file_parents``."""
    meta = _mapping(where, "metadata", args.get("metadata", {}))
    parents = args.get("parents", [])
    if not isinstance(parents, list):
        raise InvalidInput(f"{where}: parents must be a list of LFNs")
    args["metadata"] = dict(meta)
    args["parents"] = [_lfn(where, p) for p in parents]
    per_meta = {
        k: dict(_mapping(where, f"file_metadata[{k}]", v))
        for k, v in _mapping(where, "file_metadata", args.get("file_metadata", {})).items()
    }
    per_parents: dict[str, list[str]] = {}
    for k, v in _mapping(where, "file_parents", args.get("file_parents", {})).items():
        if not isinstance(v, list):
            raise InvalidInput(f"{where}: file_parents[{k}] must be a list of LFNs")
        per_parents[k] = [_lfn(where, p) for p in v]
    lfns = {f.lfn for f in files}
    strays = sorted((per_meta.keys() | per_parents.keys()) - lfns)
    if strays:
        raise InvalidInput(f"{where}: per-file values for {strays[0]}, not a file of it")
    for f in files:
        if f.metadata:
            per_meta[f.lfn] = {**per_meta.get(f.lfn, {}), **f.metadata}
        if f.parents:
            per_parents[f.lfn] = f.parents
    args["file_metadata"] = per_meta
    args["file_parents"] = per_parents
    return args


def _mapping(where: str, name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where}: {name} must be a mapping")
    return value


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """The wait before attempt ``attempts + 1``: ``base * 2**(attempts - 1)``, at most ``cap``."""
    return float(min(base * 2 ** min(max(attempts - 1, 0), 60), cap))
