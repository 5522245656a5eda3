"""Production validation: prove that a production (a list of transformations, one per step)
is complete and correct, or say what is wrong (issue 9, DESIGN.md section 6).

Per step (:class:`_StepCheck`):

- **expected vs produced**: the tasks are read in keyset pages of :data:`PAGE`; the outputs
  each task promises are its output LFN templates rendered for it (as ``render_task_job``
  renders them for its job). Expected: the outputs of every Done task, and for types without
  input (MCSimulation) of every task up to ``max_tasks`` (a run whose task failed, or that has
  no task yet, is missing). Produced: the expected outputs found in the catalog.
- **metadata**: each produced output's effective metadata against the step's
  ``output_metadata`` (and ``output_file_metadata`` for that output, when the spec has it),
  rendered for the task and coerced to the declared field types.
- **storage**: every replica of every produced output (``checksum="full"``), of a
  deterministic sample of ``sample`` outputs per step (``"sample"``: the outputs with the
  smallest keyed hash of their LFN, whatever the order they are read in) or none: size and
  ADLER32 read through the SE plugin; produced outputs without any replica.
- **duplicates**: an input file in two Done tasks, or in two tasks whose jobs both
  registered outputs (one aggregate query); outputs registered by a task that ended Failed
  or Killed; an expected output registered by another job; files a Done task's job
  registered that no template promised (``unexpected_outputs``).
- **stuck**: input files Unused, Assigned, MaxReset or Problematic, tasks Created,
  Submitted, Waiting or Running, with their reasons (error counts, failures, job status).
- **failed jobs** grouped by (minor status, application status), with example job ids.

Storage (:func:`_storage`): the production's paths on every readable SE through the
consistency check (:func:`ctaprod.logic.consistency.check`): files on storage that are not
in the catalog, catalog replicas whose file is absent, stale uploads, sizes.

Memory stays flat: one page of tasks and its outputs, the sample (``sample`` entries), at
most ``limit`` examples per kind, and the consistency check's set of file ids found on an SE.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping

from ctaprod.core.errors import CtaprodError, InvalidInput, NotFound
from ctaprod.core.lfn import check_lfn, is_under
from ctaprod.core.metaquery import FieldType, coerce
from ctaprod.core.prod_validation import (
    CHECKSUM_MODES,
    DEFAULT_LIMIT,
    ChecksumMode,
    FailureGroup,
    Issue,
    StepReport,
    StorageSection,
    ValidationReport,
)
from ctaprod.core.storage import se_path
from ctaprod.core.trans_states import TASK_LIVE, TaskStatus, TransFileStatus
from ctaprod.core.trans_templates import (
    IN_LFN,
    IN_METADATA,
    PER_TRANSFORMATION,
    TaskValues,
    placeholders_in,
    render_lfns,
    substitute,
)
from ctaprod.core.trans_types import TYPES
from ctaprod.core.transformations import TransformationSpec
from ctaprod.db.prod_validation import SharedInput, ValidationDB
from ctaprod.logic import consistency
from ctaprod.logic import storage as S
from ctaprod.logic.catalog_access import resolve
from ctaprod.logic.context import Context
from ctaprod.logic.transformations import spec_of

__all__ = ["PAGE", "Progress", "default_paths", "validate"]

log = logging.getLogger("ctaprod.validation")

PAGE = 5_000  # tasks per keyset page
MAX_SAMPLE = 1_000_000
EXAMPLE_JOBS = 5  # example job ids per failure reason
READERS = 8  # replicas read at once (the SE calls wait on I/O)
TK, TF = TaskStatus, TransFileStatus
STUCK_FILES = (TF.UNUSED, TF.ASSIGNED, TF.MAX_RESET, TF.PROBLEMATIC)
STUCK_TASKS = tuple(s for s in TaskStatus if s in TASK_LIVE)

Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class _Output:
    """One output a task promises: its LFN and the metadata it must carry."""

    lfn: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class _Stored:
    """A produced output to read on storage: catalog size, checksum and replica SEs."""

    lfn: str
    size: int
    checksum: str
    ses: tuple[str, ...]


def validate(
    ctx: Context,
    trans_ids: Sequence[int],
    *,
    paths: Sequence[str] | None = None,
    checksum: ChecksumMode = "sample",
    sample: int = 100,
    progress: Progress | None = None,
    limit: int = DEFAULT_LIMIT,
) -> ValidationReport:
    """Validate the steps ``trans_ids`` of a production (module docstring).

    ``paths``: directories searched for orphans (default: :func:`default_paths`);
    ``checksum``: read every replica (``full``), a sample of ``sample`` outputs per step, or
    none; ``progress(phase, done, total)`` is called as the work goes (total 0: unknown);
    ``limit``: examples kept per kind of problem (the counts are complete). NotFound for an
    unknown transformation, InvalidInput for bad arguments.
    """
    if checksum not in CHECKSUM_MODES:
        raise InvalidInput(f"checksum must be one of {', '.join(CHECKSUM_MODES)}, not {checksum!r}")
    if not 0 <= sample <= MAX_SAMPLE:
        raise InvalidInput(f"sample must be between 0 and {MAX_SAMPLE}, not {sample}")
    if not 0 <= limit <= 100_000:
        raise InvalidInput(f"limit must be between 0 and 100000, not {limit}")
    if not trans_ids:
        raise InvalidInput("no transformation to validate")
    report_progress = progress or _no_progress
    started = ctx.clock()
    t0 = time.perf_counter()
    with ctx.db.read() as conn:
        rows = {}
        for tid in dict.fromkeys(int(t) for t in trans_ids):
            row = ctx.trans.get(conn, tid)
            if row is None:
                raise NotFound(f"no transformation {tid}", transformation=str(tid))
            rows[tid] = row
        types = ctx.meta.field_types(conn)
    specs = {tid: spec_of(row) for tid, row in rows.items()}
    chosen = [check_lfn(p) for p in paths] if paths is not None else default_paths(specs)
    report = ValidationReport(
        trans_ids=list(rows),
        paths=chosen,
        checksum=checksum,
        sample=sample,
        limit=limit,
        started=started.isoformat(),
    )
    readers = _Readers(ctx)
    for tid, row in rows.items():
        check = _StepCheck(ctx, row, specs[tid], types, readers, checksum, sample, limit)
        report.steps.append(check.run(report_progress))
    report.storage = _storage(ctx, chosen, limit, report_progress)
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info(
        "validation of %s: valid %s, %d/%d outputs, %.1f s",
        list(rows), report.valid, report.produced_outputs, report.expected_outputs,
        report.seconds,
    )  # fmt: skip
    return report


# --- paths -----------------------------------------------------------------------------------
def default_paths(specs: Mapping[int, TransformationSpec]) -> list[str]:
    """The directories the steps write under: each output LFN template with the
    transformation's ID and name filled in, up to the first other placeholder (its last
    ``/``); directories under another one left out."""
    found: set[str] = set()
    for tid, spec in specs.items():
        for template in spec.output_lfn_template:
            found.add(_fixed_base(template, tid, spec.name))
    kept: list[str] = []
    for path in sorted(found, key=lambda p: (p.count("/"), p)):
        if not any(is_under(path, k, or_equal=True) for k in kept):
            kept.append(path)
    return sorted(kept)


def _fixed_base(template: str, trans_id: int, name: str) -> str:
    """The directory of ``template`` up to its first placeholder that varies per task."""
    text, pos = [], 0
    for holder in placeholders_in(template, IN_LFN, "output_lfn_template"):
        if holder.name not in PER_TRANSFORMATION:
            text.append(template[pos : holder.start])
            break
        value = name
        if holder.name == "transformation_id":
            number = trans_id // (holder.divisor or 1)
            value = f"{number:0{holder.width}d}" if holder.width else str(number)
        text += [template[pos : holder.start], value]
        pos = holder.end
    else:
        text.append(template[pos:])
    head = "".join(text)
    return head[: head.rfind("/")] or "/"


# --- storage ---------------------------------------------------------------------------------
class _Readers:
    """Which SEs may be read (configured, not banned), asked once per SE."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.refused: dict[str, str] = {}
        self.ok: set[str] = set()

    def why_not(self, se: str) -> str | None:
        if se not in self.ok and se not in self.refused:
            ok, refused = S.usable(self.ctx, [se], "read")
            self.ok.update(ok)
            self.refused.update(refused)
        return self.refused.get(se)


def _storage(ctx: Context, paths: Sequence[str], limit: int, progress: Progress) -> StorageSection:
    """Every readable SE under every path, through the consistency check (no checksums: the
    steps read them, for every output or a sample)."""
    section = StorageSection()
    elements = S.elements(ctx)
    total = len(paths) * len(elements)
    done = 0
    for info in elements:
        if not info.read:
            section.skipped[info.name] = f"banned for read: {info.read_reason}"
            done += len(paths)
            continue
        for path in paths:
            progress(f"storage {info.name} {path}", done, total)
            section.checks.append(
                consistency.compare(ctx, path, info.name, checksums=False, limit=limit)
            )
            done += 1
    progress("storage", done, total)
    return section


# --- one step --------------------------------------------------------------------------------
class _StepCheck:
    def __init__(
        self,
        ctx: Context,
        row: RowMapping,
        spec: TransformationSpec,
        types: Mapping[str, FieldType],
        readers: _Readers,
        checksum: ChecksumMode,
        sample: int,
        limit: int,
    ) -> None:
        self.ctx = ctx
        self.row = row
        self.spec = spec
        self.types = types
        self.readers = readers
        self.mode = checksum
        self.sample_size = sample if checksum == "sample" else 0
        self.limit = limit
        self.trans_id = int(row["trans_id"])
        self.has_input = TYPES.get(spec.type).needs_input if spec.type in TYPES else True
        self.per_input = spec.per_input_outputs()
        self.allowed_meta = IN_METADATA - (
            {"run_number"} if spec.run_number_start is None else set()
        )
        self.file_metadata: list[dict[str, Any]] = list(
            getattr(spec, "output_file_metadata", None) or []
        )
        self.vdb = ValidationDB()
        self.sampled: list[tuple[int, _Stored]] = []  # a max-heap on -key: the smallest keys
        self.report = StepReport(
            trans_id=self.trans_id, name=row["name"], type=row["type"], status=row["status"]
        )

    def run(self, progress: Progress) -> StepReport:
        rep = self.report
        with self.ctx.db.read() as conn:
            rep.tasks = self.ctx.trans.task_counts(conn, self.trans_id)
            rep.files = self.ctx.trans.file_counts(conn, self.trans_id)
        total = sum(rep.tasks.values())
        phase = f"step {self.trans_id}: tasks"
        after, done = 0, 0
        progress(phase, 0, total)
        while True:
            with self.ctx.db.read() as conn:
                rows = self.ctx.trans.tasks(conn, self.trans_id, after=after, limit=PAGE)
                to_read = self._page(conn, rows)
            self._read_storage(to_read)
            done += len(rows)
            progress(phase, done, total)
            if len(rows) < PAGE:
                break
            after = int(rows[-1]["task_id"])
        self._runs_without_task()
        with self.ctx.db.read() as conn:
            self._shared_inputs(conn)
            self._stuck(conn)
            self._failures(conn)
        if self.sampled:
            chosen = sorted((s for _, s in self.sampled), key=lambda s: s.lfn)
            progress(f"step {self.trans_id}: checksums", 0, len(chosen))
            self._read_storage(chosen)
            progress(f"step {self.trans_id}: checksums", len(chosen), len(chosen))
        return rep

    # -- outputs of one page of tasks -------------------------------------------------------
    def _outputs(self, task: RowMapping, inputs: Sequence[str]) -> list[_Output]:
        values = TaskValues(
            self.trans_id, self.spec.name, int(task["task_id"]), task["run_number"], tuple(inputs)
        )
        meta = substitute(self.spec.output_metadata, self.allowed_meta, values, "output_metadata")
        out = []
        for index, (template, each) in enumerate(
            zip(self.spec.output_lfn_template, self.per_input, strict=True)
        ):
            own: dict[str, Any] = {}
            if index < len(self.file_metadata) and self.file_metadata[index]:
                own = substitute(
                    self.file_metadata[index], self.allowed_meta, values, "output_file_metadata"
                )
            for lfn in render_lfns([template], values, [each]):
                out.append(_Output(lfn, {**meta, **own}))
        return out

    def _page(self, conn: Connection, rows: Sequence[RowMapping]) -> list[_Stored]:
        ctx, rep, limit = self.ctx, self.report, self.limit
        if not rows or not self.spec.output_lfn_template:
            return []
        ids = [int(r["task_id"]) for r in rows]
        inputs: dict[int, list[int]] = ctx.trans.task_inputs(conn, ids) if self.has_input else {}
        input_lfns = ctx.catalog.lfns(conn, [f for fs in inputs.values() for f in fs])
        expected: dict[str, tuple[int, _Output]] = {}  # Done tasks' outputs -> task
        promised: dict[int, set[str]] = {}  # per Done task
        for task in rows:
            task_id, status = int(task["task_id"]), TK(task["status"])
            counts = status is TK.DONE or not self.has_input
            if not counts:
                continue
            files = inputs.get(task_id, [])
            if any(f not in input_lfns for f in files):
                rep.expected_outputs += 1
                rep.missing_outputs.add(
                    limit, task_id=task_id, status=status.value,
                    reason="an input file left the catalog: its outputs cannot be named",
                )  # fmt: skip
                continue
            try:
                outputs = self._outputs(task, [input_lfns[f] for f in files])
            except (InvalidInput, ValueError) as exc:
                rep.expected_outputs += 1
                rep.missing_outputs.add(limit, task_id=task_id, reason=f"outputs not named: {exc}")
                continue
            rep.expected_outputs += len(outputs)
            if status is not TK.DONE:  # a run of an MC step that did not end Done
                for output in outputs:
                    rep.missing_outputs.add(
                        limit, lfn=output.lfn, task_id=task_id, status=status.value,
                        reason=f"its task is {status.value}",
                    )  # fmt: skip
                continue
            promised[task_id] = {o.lfn for o in outputs}
            expected.update({o.lfn: (task_id, o) for o in outputs})
        job_of = {int(r["task_id"]): int(r["job_id"]) for r in rows if r["job_id"] is not None}
        self._registered_by_jobs(conn, rows, job_of, promised)
        if not expected:
            return []
        found, _ = resolve(ctx, conn, expected)
        for lfn, (task_id, _) in expected.items():
            if lfn not in found:
                rep.missing_outputs.add(
                    limit, lfn=lfn, task_id=task_id, reason="not in the catalog"
                )
        file_ids = [f.file_id for f in found.values()]
        replicas = ctx.catalog.replicas(conn, file_ids)
        keys = sorted({k for _, o in expected.values() for k in o.metadata})
        values = (
            ctx.meta.effective_file_values(conn, file_ids, self.types, only=keys) if keys else {}
        )
        to_read: list[_Stored] = []
        for lfn, entry in found.items():
            task_id, output = expected[lfn]
            rep.produced_outputs += 1
            job = job_of.get(task_id)
            if entry.job_id is not None and job is not None and entry.job_id != job:
                rep.duplicates.add(
                    limit, lfn=lfn, task_id=task_id, job_id=entry.job_id,
                    reason=f"registered by job {entry.job_id}, not by its task's job {job}",
                )  # fmt: skip
            self._check_metadata(lfn, task_id, output.metadata, values.get(entry.file_id, {}))
            ses = tuple(replicas.get(entry.file_id, ()))
            if not ses:
                rep.no_replica.add(limit, lfn=lfn, task_id=task_id, reason="no replica")
                continue
            stored = _Stored(lfn, entry.size, entry.checksum, ses)
            if self.mode == "full":
                to_read.append(stored)
            elif self.sample_size:
                self._offer(stored)
        return to_read

    def _registered_by_jobs(
        self,
        conn: Connection,
        rows: Sequence[RowMapping],
        job_of: Mapping[int, int],
        promised: Mapping[int, set[str]],
    ) -> None:
        """Files the page's jobs registered: a task that did not end Done must have none
        (once it is final), a Done task only those it promised."""
        rep, limit = self.report, self.limit
        written = self.ctx.catalog.files_of_jobs(conn, list(job_of.values()))
        if not written:
            return
        lfns = self.ctx.catalog.lfns(conn, [f for fs in written.values() for f in fs])
        for task in rows:
            task_id, status = int(task["task_id"]), TK(task["status"])
            job = job_of.get(task_id)
            files = written.get(job, []) if job is not None else []
            if not files or status in TASK_LIVE:
                continue  # a live task is reported stuck; its outputs may still be coming
            for file_id in files:
                lfn = lfns.get(file_id)
                if status is not TK.DONE:
                    rep.duplicates.add(
                        limit, lfn=lfn, task_id=task_id, job_id=job, status=status.value,
                        reason=f"output of a task that ended {status.value}",
                    )  # fmt: skip
                elif lfn not in promised.get(task_id, set()):
                    rep.unexpected_outputs.add(
                        limit, lfn=lfn, task_id=task_id, job_id=job,
                        reason="registered by the task's job, promised by no output template",
                    )  # fmt: skip

    def _check_metadata(
        self, lfn: str, task_id: int, wanted: Mapping[str, Any], found: Mapping[str, Any]
    ) -> None:
        for key, raw in wanted.items():
            ftype = self.types.get(key)
            try:
                value = coerce(key, ftype, raw) if ftype is not None else raw
            except InvalidInput:
                value = raw
            actual = found.get(key)
            if not _same(value, actual):
                self.report.metadata_mismatch.add(
                    self.limit, lfn=lfn, task_id=task_id, key=key, expected=value, found=actual
                )

    # -- storage ---------------------------------------------------------------------------
    def _offer(self, stored: _Stored) -> None:
        """Keep the ``sample_size`` outputs with the smallest keyed hash of their LFN: the
        same sample whatever the order the outputs are read in."""
        digest = hashlib.blake2b(stored.lfn.encode(), digest_size=8, key=b"ctaprod-sample")
        key = int.from_bytes(digest.digest(), "big")
        if len(self.sampled) < self.sample_size:
            heapq.heappush(self.sampled, (-key, stored))
        elif -self.sampled[0][0] > key:
            heapq.heapreplace(self.sampled, (-key, stored))

    def _read_storage(self, files: Sequence[_Stored]) -> None:
        if not files:
            return
        jobs = [(f, se) for f in files for se in f.ses]
        with ThreadPoolExecutor(max_workers=min(READERS, len(jobs))) as pool:
            results = list(pool.map(lambda job: self._read_replica(*job), jobs))
        rep, limit = self.report, self.limit
        rep.checked_files += len(files)
        for (stored, se), (kind, found) in zip(jobs, results, strict=True):
            if kind == "ok":
                rep.checked_replicas += 1
            elif kind == "missing_on_storage":
                rep.missing_on_storage.add(limit, lfn=stored.lfn, se=se, reason="no file")
            elif kind == "size_mismatch":
                rep.size_mismatch.add(
                    limit, lfn=stored.lfn, se=se, expected=stored.size, found=found
                )
            elif kind == "checksum_mismatch":
                rep.checksum_mismatch.add(
                    limit, lfn=stored.lfn, se=se, expected=stored.checksum, found=found
                )
            else:
                rep.unchecked_replicas.add(limit, lfn=stored.lfn, se=se, reason=str(found))

    def _read_replica(self, stored: _Stored, se: str) -> tuple[str, Any]:
        """(kind, what was found) for one replica: ok, missing, a size or checksum
        mismatch, or unchecked (the SE may not be read, or failed)."""
        why = self.readers.why_not(se)
        if why is not None:
            return "unchecked", why
        try:
            storage = self.ctx.storage(se)
            path = se_path(stored.lfn)
            size = storage.size(path)
            if size != stored.size:
                return "size_mismatch", size
            actual = storage.checksum(path)
        except NotFound:
            return "missing_on_storage", None
        except (CtaprodError, OSError) as exc:
            return "unchecked", f"cannot read it: {exc}"
        if actual.lower().lstrip("0") != stored.checksum.lower().lstrip("0"):
            return "checksum_mismatch", actual
        return "ok", None

    # -- the rest: runs without task, shared inputs, stuck, failures ------------------------
    def _runs_without_task(self) -> None:
        """Types without input: the runs up to max_tasks that have no task yet."""
        if self.has_input or not self.spec.output_lfn_template:
            return
        made = sum(self.report.tasks.values())
        left = max(0, (self.spec.max_tasks or 0) - made)
        outputs = len(self.spec.output_lfn_template)
        self.report.expected_outputs += left * outputs
        self.report.missing_outputs.add_count(
            left * outputs, self.limit,
            reason=f"{left} runs have no task yet ({made} of max_tasks {self.spec.max_tasks})",
        )  # fmt: skip

    def _shared_inputs(self, conn: Connection) -> None:
        if not self.has_input:
            return
        rep, kept = self.report, list[SharedInput]()
        for shared in self.vdb.shared_inputs(conn, self.trans_id):
            rep.duplicates.count += 1
            if len(kept) < self.limit:
                kept.append(shared)
        lfns = self.ctx.catalog.lfns(conn, [s.file_id for s in kept])
        for s in kept:
            rep.duplicates.examples.append(
                Issue(
                    lfn=lfns.get(s.file_id), file_id=s.file_id, task_id=s.last_task,
                    reason=f"input file in {s.done_tasks} Done tasks and in {s.tasks_with_outputs} "
                    f"tasks with outputs (tasks {s.first_task}..{s.last_task})",
                )
            )  # fmt: skip
        del rep.duplicates.examples[self.limit :]

    def _stuck(self, conn: Connection) -> None:
        ctx, rep, limit = self.ctx, self.report, self.limit
        stuck_files = [s.value for s in STUCK_FILES]
        rep.stuck_files.count = sum(rep.files.get(s, 0) for s in stuck_files)
        if rep.stuck_files.count and limit:
            rows = ctx.trans.files(conn, self.trans_id, statuses=stuck_files, limit=limit)
            lfns = ctx.catalog.lfns(conn, [int(r["file_id"]) for r in rows])
            reset = [int(r["file_id"]) for r in rows if r["status"] == TF.MAX_RESET.value]
            failures = ctx.trans.failures_of_files(conn, self.trans_id, reset) if reset else {}
            for r in rows:
                file_id = int(r["file_id"])
                why = "; ".join(failures.get(file_id, [])) or r["last_error"] or ""
                rep.stuck_files.examples.append(
                    Issue(
                        lfn=lfns.get(file_id), file_id=file_id, task_id=r["task_id"],
                        status=r["status"], found=int(r["error_count"]),
                        reason=f"{r['error_count']} errors" + (f": {why}" if why else ""),
                    )
                )  # fmt: skip
        live = [s.value for s in STUCK_TASKS]
        rep.stuck_tasks.count = sum(rep.tasks.get(s, 0) for s in live)
        if rep.stuck_tasks.count and limit:
            rows = ctx.trans.tasks(conn, self.trans_id, statuses=live, limit=limit)
            jobs = self.vdb.job_statuses(conn, [int(r["job_id"]) for r in rows if r["job_id"]])
            for r in rows:
                job = jobs.get(int(r["job_id"])) if r["job_id"] is not None else None
                if job is not None:
                    why = f"job {r['job_id']} {job[0]}" + "".join(f"; {s}" for s in job[1:] if s)
                else:
                    why = "no job yet" if r["job_id"] is None else f"job {r['job_id']} is gone"
                if r["error"]:
                    why += f"; last error: {r['error']}"
                rep.stuck_tasks.examples.append(
                    Issue(task_id=r["task_id"], job_id=r["job_id"], status=r["status"], reason=why)
                )

    def _failures(self, conn: Connection) -> None:
        rep = self.report
        for n, group in enumerate(self.vdb.failure_groups(conn, self.trans_id)):
            if n >= self.limit:
                rep.failure_reasons_left_out += 1
                continue
            examples = self.vdb.failure_examples(
                conn, self.trans_id, group.minor_status, group.application_status, EXAMPLE_JOBS
            )
            rep.failed_jobs.append(
                FailureGroup(
                    minor_status=group.minor_status,
                    application_status=group.application_status,
                    failures=group.failures,
                    jobs=group.jobs,
                    still_failed=group.still_failed,
                    example_job_ids=examples,
                )
            )


def _same(expected: Any, found: Any) -> bool:
    if isinstance(expected, float) or isinstance(found, float):
        try:
            return math.isclose(float(expected), float(found), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return bool(expected == found)
