"""Models of the production validation report (``ctaprod prod validate``): one section per
step (one transformation), a storage section for the production's paths, and totals.

Every kind of problem is an :class:`Issues`: its complete count and the first ``limit``
examples (the validation streams through the database, so lists are capped, counts are not).
``valid`` is true when no kind that proves the production incomplete or wrong has a count;
failed jobs are reported (grouped by reason) but do not make a production invalid on their
own: a failure that was retried successfully leaves nothing missing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from ctaprod.core.consistency import KINDS, ConsistencyReport

__all__ = [
    "CHECKSUM_MODES",
    "DEFAULT_LIMIT",
    "LISTING_KINDS",
    "STEP_KINDS",
    "FailureGroup",
    "Issue",
    "Issues",
    "StepReport",
    "StorageSection",
    "ValidationReport",
]

ChecksumMode = Literal["full", "sample", "none"]
CHECKSUM_MODES: tuple[ChecksumMode, ...] = ("full", "sample", "none")
DEFAULT_LIMIT = 100  # examples kept per kind of problem

# The kinds of problem of a step that make it invalid, in the order the summary shows them.
STEP_KINDS = (
    "missing_outputs",
    "metadata_mismatch",
    "no_replica",
    "missing_on_storage",
    "size_mismatch",
    "checksum_mismatch",
    "unchecked_replicas",
    "duplicates",
    "unexpected_outputs",
    "stuck_files",
    "stuck_tasks",
)
# What the listing of the production's paths finds (logic/consistency.py).
LISTING_KINDS = KINDS


class Issue(BaseModel):
    """One example of a problem; only the fields that apply are set."""

    lfn: str | None = None
    task_id: int | None = None
    file_id: int | None = None
    job_id: int | None = None
    se: str | None = None
    status: str | None = None
    key: str | None = None
    expected: Any = None
    found: Any = None
    reason: str | None = None

    def text(self) -> str:
        """One line: the fields that are set."""
        parts = []
        for name in ("lfn", "task_id", "file_id", "job_id", "se", "status", "key"):
            value = getattr(self, name)
            if value is not None:
                parts.append(value if name == "lfn" else f"{name}={value}")
        if self.key is not None or self.expected is not None or self.found is not None:
            parts.append(f"expected={self.expected!r} found={self.found!r}")
        if self.reason:
            parts.append(f"({self.reason})")
        return " ".join(str(p) for p in parts)


class Issues(BaseModel):
    """How many times one kind of problem was found, with the first ``limit`` examples."""

    count: int = 0
    examples: list[Issue] = Field(default_factory=list)

    def add(self, limit: int, **fields: Any) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append(Issue(**fields))

    def add_count(self, n: int, limit: int, **fields: Any) -> None:
        """``n`` problems told by one example (e.g. MC runs that have no task)."""
        if n <= 0:
            return
        self.count += n
        if len(self.examples) < limit:
            self.examples.append(Issue(**fields))


class FailureGroup(BaseModel):
    """Failed jobs of one step sharing a reason (minor status, application status)."""

    minor_status: str
    application_status: str
    failures: int = Field(description="Failed states recorded (a retried job counts each time)")
    jobs: int = Field(description="Distinct jobs that failed so")
    still_failed: int = Field(0, description="Of them, jobs whose current status is Failed")
    example_job_ids: list[int] = Field(default_factory=list)

    @property
    def reason(self) -> str:
        both = [s for s in (self.minor_status, self.application_status) if s]
        return " / ".join(both) or "(no reason given)"


class StepReport(BaseModel):
    """One step of the production: one transformation."""

    trans_id: int
    name: str
    type: str
    status: str
    tasks: dict[str, int] = Field(default_factory=dict, description="Tasks by status")
    files: dict[str, int] = Field(default_factory=dict, description="Input files by status")
    expected_outputs: int = 0
    produced_outputs: int = 0
    checked_files: int = Field(0, description="Outputs whose replicas were read (size, ADLER32)")
    checked_replicas: int = 0
    missing_outputs: Issues = Field(default_factory=Issues)
    metadata_mismatch: Issues = Field(default_factory=Issues)
    no_replica: Issues = Field(default_factory=Issues)
    missing_on_storage: Issues = Field(default_factory=Issues)
    size_mismatch: Issues = Field(default_factory=Issues)
    checksum_mismatch: Issues = Field(default_factory=Issues)
    unchecked_replicas: Issues = Field(
        default_factory=Issues, description="Replicas that could not be read (SE banned, error)"
    )
    duplicates: Issues = Field(
        default_factory=Issues,
        description="Two outputs for one input group: an input file in two Done tasks or in "
        "two tasks with outputs; outputs of a task that did not end Done",
    )
    unexpected_outputs: Issues = Field(
        default_factory=Issues, description="Files a task's job registered that it did not promise"
    )
    stuck_files: Issues = Field(default_factory=Issues)
    stuck_tasks: Issues = Field(default_factory=Issues)
    failed_jobs: list[FailureGroup] = Field(default_factory=list)
    failure_reasons_left_out: int = Field(0, description="Further reasons, not listed")

    def issues(self, kind: str) -> Issues:
        value = getattr(self, kind)
        assert isinstance(value, Issues)
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        return not any(self.issues(k).count for k in STEP_KINDS)


class StorageSection(BaseModel):
    """The production's paths on every readable SE: the consistency checks
    (:mod:`ctaprod.logic.consistency`), one per (path, SE)."""

    checks: list[ConsistencyReport] = Field(default_factory=list)
    skipped: dict[str, str] = Field(
        default_factory=dict, description="SEs not listed, with why (banned for read)"
    )

    def count(self, kind: str) -> int:
        return sum(c.issues(kind).count for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        return all(c.consistent for c in self.checks) and not self.skipped


class ValidationReport(BaseModel):
    """The validation of a production (its steps' transformations)."""

    trans_ids: list[int]
    paths: list[str] = Field(description="Directories searched for orphans")
    checksum: ChecksumMode
    sample: int
    limit: int = DEFAULT_LIMIT
    started: str = ""
    seconds: float = 0.0
    steps: list[StepReport] = Field(default_factory=list)
    storage: StorageSection = Field(default_factory=StorageSection)

    def total(self, kind: str) -> int:
        return sum(s.issues(kind).count for s in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def expected_outputs(self) -> int:
        return sum(s.expected_outputs for s in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def produced_outputs(self) -> int:
        return sum(s.produced_outputs for s in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> dict[str, int]:
        """Per kind of problem: the count over every step (and the storage section)."""
        out = {k: self.total(k) for k in STEP_KINDS}
        for kind in LISTING_KINDS:  # the listings of the paths, apart: they overlap the steps'
            out[f"storage_{kind}"] = self.storage.count(kind)
        out["failed_jobs"] = sum(g.jobs for s in self.steps for g in s.failed_jobs)
        return out

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        return all(s.valid for s in self.steps) and self.storage.valid

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def summary(self, examples: int = 5) -> list[str]:
        """Readable plain-text lines (no markup): the verdict, per step its counts and the
        first ``examples`` of each problem, then the storage checks."""
        verdict = "VALID" if self.valid else "NOT VALID"
        sampled = f" (sample of {self.sample} per step)" if self.checksum == "sample" else ""
        lines = [
            f"Production validation: {verdict} ({len(self.steps)} steps, "
            f"{self.produced_outputs:,}/{self.expected_outputs:,} outputs, checksums "
            f"{self.checksum}{sampled}, "
            f"{self.seconds:.1f} s)"
        ]
        for step in self.steps:
            mark = "ok" if step.valid else "NOT VALID"
            lines.append(
                f"step {step.trans_id} {step.name} ({step.type}, {step.status}): {mark}; "
                f"outputs {step.produced_outputs:,}/{step.expected_outputs:,}, "
                f"{step.checked_files:,} files read on storage"
            )
            lines.append("  tasks: " + _counts(step.tasks) + "; files: " + _counts(step.files))
            for kind in STEP_KINDS:
                issues = step.issues(kind)
                if issues.count:
                    lines.append(f"  {kind.replace('_', ' ')}: {issues.count:,}")
                    lines += [f"    {i.text()}" for i in issues.examples[:examples]]
            if step.failed_jobs:
                lines.append("  failed jobs by reason:")
                for group in step.failed_jobs:
                    ids = ", ".join(str(j) for j in group.example_job_ids[:examples])
                    lines.append(
                        f"    {group.jobs:,} jobs ({group.failures:,} failures, "
                        f"{group.still_failed:,} still Failed): {group.reason} [e.g. {ids}]"
                    )
                if step.failure_reasons_left_out:
                    lines.append(f"    ... {step.failure_reasons_left_out} more reasons")
        lines.append("storage under " + (", ".join(self.paths) or "(no path)") + ":")
        for check in self.storage.checks:
            state = "consistent" if check.consistent else "NOT consistent"
            lines.append(
                f"  {check.se} {check.path}: {check.storage_files:,} files, "
                f"{check.catalog_replicas:,} replica entries, {state}"
            )
            for kind in LISTING_KINDS:
                found = check.issues(kind)
                if found.count:
                    lines.append(f"    {kind.replace('_', ' ')}: {found.count:,}")
                    lines += [f"      {lfn}" for lfn in found.lfns[:examples]]
        for se, why in self.storage.skipped.items():
            lines.append(f"  {se}: not listed ({why})")
        return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"
