"""A job's data on the worker node: input download, output upload and registration, failover.

Inputs: the catalog gives each LFN's replicas; they are tried at the pilot's site first, each
copy checked (size and ADLER32) before it is kept. Outputs: each declared file goes to the
first OutputSE that takes it, at a path unique to the job attempt (the checksum read back
from the SE must match), then all are registered in one call with the job's metadata
(OutputMetadata, with the file's own OutputFileMetadata entry over it) and its inputs as
parents, and renamed to their LFN's path once the catalog accepted them. When every target
SE fails a file goes to a failover SE instead, and when the catalog cannot be reached the
registration is postponed: both become operations of one request (see :func:`request_for`)
that the server's request executor carries out; the job then ends Completed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.http import Client
from ctaprod.core.catalog import FileInfo, FileRegistration
from ctaprod.core.errors import CtaprodError
from ctaprod.core.jobs import JobDescription
from ctaprod.core.requests import OperationSpec, OperationType, RequestFile, RequestSpec
from ctaprod.core.settings import StorageElementConfig
from ctaprod.core.storage import StorageElementInfo, attempt_upload_path, se_path
from ctaprod.pilot.config import RetryPolicy
from ctaprod.resources.storage import StorageElement, adler32_of, create_storage_element

logger = logging.getLogger("ctaprod.pilot.data")
FAILOVER = "failover"
USER_ROOT = "/ctao/user"  # outputs of jobs that give no OutputPath go under it
SHOWN = 3  # LFNs named in a minor status


class DataFailure(Exception):
    """The job cannot go on; the message is its minor status."""


def _names(lfns: Sequence[str]) -> str:
    more = f" (+{len(lfns) - SHOWN} more)" if len(lfns) > SHOWN else ""
    return ", ".join(lfns[:SHOWN]) + more


def default_output_dir(owner: str, job_id: int) -> str:
    """Where OutputData goes when the job gives no OutputPath (DIRAC's user area layout)."""
    return f"{USER_ROOT}/{owner[:1]}/{owner}/{job_id}"


class StorageElements:
    """The SEs the server lists for worker nodes; their plugins are built when first used."""

    def __init__(self, infos: Sequence[StorageElementInfo]) -> None:
        self.infos = {i.name: i for i in infos}
        self._plugins: dict[str, StorageElement] = {}

    @classmethod
    def fetch(cls, client: Client, retry: RetryPolicy) -> StorageElements:
        return cls(retry.call(client.se_list, "storage element list"))

    def plugin(self, name: str) -> StorageElement:
        """The plugin of SE ``name``; ``CtaprodError`` if unknown or misconfigured."""
        se = self._plugins.get(name)
        if se is None:
            info = self.infos.get(name)
            if info is None:
                raise CtaprodError(f"storage element {name} is not configured")
            config = StorageElementConfig(
                plugin=info.plugin,
                base_path=info.base_path,
                endpoint=info.endpoint,
                site=info.site,
                options=info.options,
            )
            se = self._plugins[name] = create_storage_element(name, config)
        return se

    def group(self, name: str) -> list[str]:
        return [n for n, i in self.infos.items() if name in i.groups]

    def read_order(self, replicas: Sequence[str], site: str) -> list[str]:
        """Readable replicas, those at ``site`` first (otherwise in the catalog's order)."""
        readable = [se for se in replicas if se in self.infos and self.infos[se].read]
        return sorted(readable, key=lambda se: self.infos[se].site != site)

    def default_targets(self, site: str) -> list[str]:
        """Where outputs go when the job names no OutputSE: non-failover SEs, local first."""
        failover = set(self.group(FAILOVER))
        names = [n for n in self.infos if n not in failover]
        return sorted(names, key=lambda n: self.infos[n].site != site)


# --- input data --------------------------------------------------------------------------
def lookup(client: Client, lfns: Sequence[str], retry: RetryPolicy) -> dict[str, FileInfo]:
    """The catalog entries of ``lfns`` (missing ones absent)."""
    return retry.call(lambda: client.files(list(lfns)), "catalog lookup")


def download_inputs(
    client: Client,
    storage: StorageElements,
    lfns: Sequence[str],
    dest: Path,
    site: str,
    retry: RetryPolicy,
) -> list[Path]:
    """Copy each input file into ``dest`` (by file name), trying its replicas at ``site``
    first and keeping the first copy whose size and ADLER32 match the catalog.

    Raises :class:`DataFailure` (the job's minor status) when a file is not catalogued or no
    replica of it could be copied.
    """
    wanted = list(dict.fromkeys(lfns))
    names = [lfn.rsplit("/", 1)[-1] for lfn in wanted]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise DataFailure(f"Input data: two files named {clash[0]}")
    try:
        files = lookup(client, wanted, retry)
    except (ServerUnreachable, ApiError) as exc:
        raise DataFailure(f"Input data: catalog lookup failed ({exc})") from exc
    missing = [lfn for lfn in wanted if lfn not in files]
    if missing:
        raise DataFailure(f"Input data not in the catalog: {_names(missing)}")
    out = []
    for lfn, name in zip(wanted, names, strict=True):
        target = dest / name
        if not _fetch(storage, files[lfn], target, site):
            raise DataFailure(f"Input data not available: {lfn} (no good replica)")
        out.append(target)
    return out


def _fetch(storage: StorageElements, info: FileInfo, target: Path, site: str) -> bool:
    """Copy one file from the first replica that gives the right bytes; False if none did."""
    part = target.with_name(f".{target.name}.part")
    order = storage.read_order(info.replicas, site)
    if not order:
        logger.error("%s: no readable replica among %s", info.lfn, info.replicas)
    for se in order:
        try:
            storage.plugin(se).get(se_path(info.lfn), part)
            size, checksum = part.stat().st_size, adler32_of(part)
        except (CtaprodError, OSError) as exc:
            logger.warning("%s: replica at %s unreadable: %s", info.lfn, se, exc)
            part.unlink(missing_ok=True)
            continue
        if (size, checksum) != (info.size, info.checksum):
            logger.warning(
                "%s: replica at %s is corrupted (size %d, ADLER32 %s; catalog: %d, %s)",
                info.lfn,
                se,
                size,
                checksum,
                info.size,
                info.checksum,
            )
            part.unlink(missing_ok=True)
            continue
        os.replace(part, target)
        logger.info("%s: downloaded from %s (%d bytes)", info.lfn, se, size)
        return True
    return False


# --- output data -------------------------------------------------------------------------
class TransferAbandoned(Exception):
    """The server took the job away during a transfer: it stopped, its uploads are removed
    and nothing was registered."""


def _never() -> bool:
    return False


@dataclass
class StoredOutput:
    """An output file on storage: its registration, the SEs it still has to reach
    (non-empty when it sits on a failover SE), and this attempt's upload path until the
    file is renamed into place (empty once it is)."""

    reg: FileRegistration
    pending_targets: list[str] = field(default_factory=list)
    upload: str = ""


@dataclass
class OutputResult:
    """What became of the outputs: the request still to create (None: nothing pending)."""

    stored: list[StoredOutput]
    registered: bool
    request: RequestSpec | None


class _Watched:
    """A local file read for an upload, which gives up (TransferAbandoned) as soon as
    ``stop()`` says the job is no longer ours: the SE plugin then drops the partial copy."""

    def __init__(self, stream: BinaryIO, stop: Callable[[], bool], lfn: str) -> None:
        self.stream, self.stop, self.lfn = stream, stop, lfn

    def read(self, size: int = -1) -> bytes:
        if self.stop():
            raise TransferAbandoned(f"{self.lfn}: upload abandoned, the job is no longer ours")
        return self.stream.read(size)


def _upload_to(
    storage: StorageElements,
    se: str,
    local: Path,
    path: str,
    size: int,
    sum_: str,
    stop: Callable[[], bool],
) -> None:
    """Put one file at ``path`` on ``se`` and check what the SE holds; ``CtaprodError`` /
    ``OSError`` if anything is wrong, TransferAbandoned if the job went away (a bad or
    partial copy is removed)."""
    info = storage.infos.get(se)
    if info is None:
        raise CtaprodError(f"storage element {se} is not configured")
    if not info.write:
        raise CtaprodError(f"storage element {se} is not writable: {info.write_reason}")
    plugin = storage.plugin(se)
    try:
        with local.open("rb") as stream:
            plugin.put(path, cast(BinaryIO, _Watched(stream, stop, path)))
        got = (plugin.size(path), plugin.checksum(path))
    except TransferAbandoned:
        with contextlib.suppress(CtaprodError, OSError):
            plugin.remove(path)
        raise
    if got != (size, sum_):
        with contextlib.suppress(CtaprodError, OSError):
            plugin.remove(path)
        raise CtaprodError(f"copy on {se} is {got[0]} bytes, ADLER32 {got[1]}: not the file")


def store_outputs(
    client: Client,
    storage: StorageElements,
    desc: JobDescription,
    job_dir: Path,
    default_dir: str,
    site: str,
    retry: RetryPolicy,
    *,
    job_id: int = 0,
    attempt: int = 0,
    stop: Callable[[], bool] = _never,
) -> list[StoredOutput]:
    """Upload every OutputData file to its first working OutputSE, else to a failover SE,
    at the path of this job attempt (:func:`attempt_upload_path`), not at its LFN's.

    Raises :class:`DataFailure` when a declared file is missing, is already catalogued with
    other content by someone else than an earlier attempt of this job, or no SE at all
    would take it; :class:`TransferAbandoned` when ``stop()`` says the job is gone. Either
    way the uploads made so far are removed.
    """
    lfns = desc.output_lfns(default_dir)
    locals_ = {
        e: job_dir / (e.rsplit("/", 1)[-1] if e.upper().startswith("LFN:") else e) for e in lfns
    }
    absent = [e for e, p in locals_.items() if not p.is_file()]
    if absent:
        raise DataFailure(f"Output data missing: {_names(absent)}")
    unknown = [se for se in desc.output_se if se not in storage.infos]
    if unknown:  # no failover: a request to reach it would never succeed
        raise DataFailure(f"Output data: OutputSE {_names(unknown)} is not a storage element")
    targets = list(desc.output_se) or storage.default_targets(site)
    failover = [se for se in storage.group(FAILOVER) if se not in targets]
    known = _known(client, list(lfns.values()), retry)
    out: list[StoredOutput] = []
    try:
        for entry, lfn in lfns.items():
            local = locals_[entry]
            size, checksum = local.stat().st_size, adler32_of(local)
            old = known.get(lfn)
            same = old is not None and (old.size, old.checksum) == (size, checksum)
            if old is not None and not same and not _rerun_of(old, job_id, attempt):
                raise DataFailure(f"Output data {lfn} is already registered with other content")
            reg = FileRegistration(
                lfn=lfn,
                size=size,
                checksum=checksum,
                guid=old.guid if old is not None and same else str(uuid.uuid4()),
                metadata=desc.metadata_of(lfn),
                parents=desc.input_data,
            )
            path = attempt_upload_path(lfn, job_id, attempt)
            se = _first_working(storage, targets, local, path, size, checksum, stop)
            if se is not None:
                out.append(StoredOutput(reg.model_copy(update={"se": se}), upload=path))
                continue
            se = _first_working(storage, failover, local, path, size, checksum, stop)
            if se is None:
                raise DataFailure(f"Output data {lfn}: no storage element took it")
            # As DIRAC does, the request moves the file to the first OutputSE (one replica).
            logger.warning("%s: stored on failover SE %s, to go to %s later", lfn, se, targets[0])
            out.append(StoredOutput(reg.model_copy(update={"se": se}), targets[:1], path))
    except BaseException:
        _remove_uploads(storage, out)
        raise
    return out


def _rerun_of(old: FileInfo, job_id: int, attempt: int) -> bool:
    """Whether ``old`` was registered by an earlier attempt of this job (a rerun replaces it)."""
    return old.job_id == job_id and old.attempt is not None and old.attempt < attempt


def _known(client: Client, lfns: list[str], retry: RetryPolicy) -> dict[str, FileInfo]:
    """Outputs already catalogued (a rerun job); nothing if the catalog cannot be asked."""
    try:
        return lookup(client, lfns, retry)
    except (ServerUnreachable, ApiError) as exc:
        logger.warning("catalog lookup of the outputs failed: %s", exc)
        return {}


def _first_working(
    storage: StorageElements,
    ses: Sequence[str],
    local: Path,
    path: str,
    size: int,
    sum_: str,
    stop: Callable[[], bool],
) -> str | None:
    for se in ses:
        try:
            _upload_to(storage, se, local, path, size, sum_, stop)
        except (CtaprodError, OSError) as exc:
            logger.warning("%s: upload to %s failed: %s", path, se, exc)
            continue
        logger.info("%s: uploaded to %s (%d bytes, ADLER32 %s)", path, se, size, sum_)
        return se
    return None


def register_outputs(client: Client, stored: Sequence[StoredOutput], retry: RetryPolicy) -> bool:
    """Register the stored outputs in one call; False when the catalog cannot be reached
    (unreachable or failing server: the registration goes into the request instead).

    A refusal (4xx: permission, metadata, an attempt that is no longer the job's current
    one...) raises :class:`DataFailure`.
    """
    regs = [s.reg for s in stored]
    try:
        retry.call(lambda: client.register_files(regs), "output registration")
    except ServerUnreachable as exc:
        logger.error("output registration failed: %s", exc)
        return False
    except ApiError as exc:
        if exc.status >= 500:
            logger.error("output registration failed: %s", exc)
            return False
        raise DataFailure(f"Output data registration refused: {exc.message}") from exc
    return True


def request_for(
    job_id: int, stored: Sequence[StoredOutput], registered: bool
) -> RequestSpec | None:
    """The request that finishes the job's outputs, or None if nothing is pending.

    Operations, in order: RegisterFile (one per SE, when the registration failed);
    ReplicateAndRegister to the target SEs and RemoveReplica of the failover copy (per
    failover SE); SetJobStatus Done.
    """
    ops: list[OperationSpec] = []
    if not registered:
        for se in dict.fromkeys(s.reg.se for s in stored):
            files = [
                RequestFile(
                    lfn=s.reg.lfn,
                    size=s.reg.size,
                    checksum=s.reg.checksum,
                    guid=s.reg.guid,
                    metadata=s.reg.metadata or None,
                    parents=s.reg.parents or None,
                )
                for s in stored
                if s.reg.se == se
            ]
            ops.append(
                OperationSpec(type=OperationType.REGISTER_FILE, arguments={"se": se}, files=files)
            )
    moved = [s for s in stored if s.pending_targets]
    for se in dict.fromkeys(s.reg.se for s in moved):
        here = [s for s in moved if s.reg.se == se]
        files = [RequestFile(lfn=s.reg.lfn) for s in here]
        ops.append(
            OperationSpec(
                type=OperationType.REPLICATE_AND_REGISTER,
                arguments={"target_ses": here[0].pending_targets, "source_se": se},
                files=files,
            )
        )
        ops.append(
            OperationSpec(
                type=OperationType.REMOVE_REPLICA,
                arguments={"se": se},
                files=[RequestFile(lfn=s.reg.lfn) for s in here],
            )
        )
    if not ops:
        return None
    ops.append(
        OperationSpec(
            type=OperationType.SET_JOB_STATUS,
            arguments={"status": "Done", "minor_status": "Requests done"},
        )
    )
    return RequestSpec(name=f"job_{job_id}_outputs", job_id=job_id, operations=ops)


def handle_outputs(
    client: Client,
    storage_of: Callable[[], StorageElements],
    job_id: int,
    desc: JobDescription,
    job_dir: Path,
    default_dir: str,
    site: str,
    retry: RetryPolicy,
    *,
    attempt: int = 0,
    stop: Callable[[], bool] = _never,
) -> OutputResult:
    """Store and register the job's OutputData; the request to create for what is pending.

    Each file lands at this attempt's upload path and is renamed to its LFN's path only once
    the catalog accepted the registration for this attempt (a superseded attempt is refused:
    its uploads are removed, nothing at the final path is touched). When the catalog cannot
    be reached the files are renamed into place and the registration goes into the request.

    Raises :class:`DataFailure` (the job fails) when the outputs cannot be stored at all or
    their registration is refused, :class:`TransferAbandoned` when ``stop()`` says the job
    was taken away before the registration.
    """
    try:
        storage = storage_of()
    except (ServerUnreachable, ApiError) as exc:
        raise DataFailure(f"Output data: storage element list unavailable ({exc})") from exc
    stored = store_outputs(
        client,
        storage,
        desc,
        job_dir,
        default_dir,
        site,
        retry,
        job_id=job_id,
        attempt=attempt,
        stop=stop,
    )
    try:
        if stop():
            raise TransferAbandoned(f"job {job_id}: taken away before registering its outputs")
        registered = register_outputs(client, stored, retry)
    except (DataFailure, TransferAbandoned):
        _remove_uploads(storage, stored)
        raise
    _place(client, storage, stored, registered)
    return OutputResult(stored, registered, request_for(job_id, stored, registered))


def _place(
    client: Client, storage: StorageElements, stored: Sequence[StoredOutput], registered: bool
) -> None:
    """Rename each registered upload to its LFN's path. A file that cannot be moved has its
    entry removed again (best effort) and its upload removed: DataFailure."""
    failed: list[str] = []
    for s in stored:
        assert s.reg.se is not None
        try:
            storage.plugin(s.reg.se).rename(s.upload, se_path(s.reg.lfn))
        except (CtaprodError, OSError) as exc:
            logger.error("%s: could not move into place on %s: %s", s.reg.lfn, s.reg.se, exc)
            failed.append(s.reg.lfn)
            continue
        s.upload = ""
    if not failed:
        return
    if registered:
        try:
            client.remove_file_entries(failed)
        except (ServerUnreachable, ApiError) as exc:
            logger.error("could not remove the entries of %s: %s", _names(failed), exc)
    _remove_uploads(storage, stored)
    raise DataFailure(f"Output data could not be moved into place: {_names(failed)}")


def _remove_uploads(storage: StorageElements, stored: Sequence[StoredOutput]) -> None:
    """Remove this attempt's uploads not renamed into place (never a file at an LFN's path:
    that one may belong to another attempt)."""
    for s in stored:
        if s.reg.se is None or not s.upload:
            continue
        try:
            storage.plugin(s.reg.se).remove(s.upload)
        except (CtaprodError, OSError) as exc:
            logger.error(
                "%s: could not remove the upload %s on %s: %s", s.reg.lfn, s.upload, s.reg.se, exc
            )
        s.upload = ""
