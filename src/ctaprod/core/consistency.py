"""Models of the catalog <-> storage consistency check (``ctaprod dm check``), shared by the
server, the client and the CLI."""

from __future__ import annotations

from pydantic import BaseModel, Field, computed_field

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_STALE_AGE",
    "KINDS",
    "MAX_LIMIT",
    "ConsistencyCheck",
    "ConsistencyReport",
    "IssueList",
]

DEFAULT_LIMIT = 1_000  # LFNs listed per kind of problem (the counts are always complete)
MAX_LIMIT = 100_000
DEFAULT_STALE_AGE = 86_400  # seconds: a temporary upload younger than this may be in flight

# Kinds of inconsistency, in the order they are shown.
KINDS = (
    "missing_on_storage",
    "orphans_on_storage",
    "stale_uploads",
    "size_mismatch",
    "checksum_mismatch",
)


class ConsistencyCheck(BaseModel):
    """Body of ``POST /api/data/check``."""

    path: str = Field(description="Catalog directory checked (recursively)")
    se: str = Field(max_length=64, description="Storage element compared with the catalog")
    checksums: bool = Field(False, description="Also compare ADLER32 (reads every file)")
    limit: int = Field(DEFAULT_LIMIT, ge=0, le=MAX_LIMIT, description="LFNs listed per kind")
    remove_stale_uploads: bool = Field(
        False, description="Remove temporary upload files older than min_age (Operator, Admin)"
    )
    min_age: int = Field(DEFAULT_STALE_AGE, ge=0, description="Seconds; see remove_stale_uploads")
    force: bool = Field(
        False, description="Remove stale uploads even when the SE cannot give their age"
    )


class IssueList(BaseModel):
    """How many files have one kind of problem, and the first ``limit`` of them."""

    count: int = 0
    lfns: list[str] = Field(default_factory=list)

    def add(self, lfn: str, limit: int) -> None:
        self.count += 1
        if len(self.lfns) < limit:
            self.lfns.append(lfn)


class ConsistencyReport(BaseModel):
    """The catalog's replicas on ``se`` under ``path`` compared with the SE's files there.

    ``missing_on_storage``: replica entries without their file; ``orphans_on_storage``: files
    without a replica entry (temporary upload files, ``~ctaprod-upload-`` in the name, are
    ``stale_uploads`` instead); ``size_mismatch``; ``checksum_mismatch`` (ADLER32, only when
    ``checksums``).  Paths are LFN-like SE paths.
    """

    path: str
    se: str
    checksums: bool = False
    limit: int = DEFAULT_LIMIT
    storage_files: int = 0  # files listed on the SE under path
    catalog_replicas: int = 0  # replica entries on se under path
    missing_on_storage: IssueList = Field(default_factory=IssueList)
    orphans_on_storage: IssueList = Field(default_factory=IssueList)
    stale_uploads: IssueList = Field(default_factory=IssueList)
    size_mismatch: IssueList = Field(default_factory=IssueList)
    checksum_mismatch: IssueList = Field(default_factory=IssueList)
    removed_stale_uploads: IssueList = Field(default_factory=IssueList)
    kept_stale_uploads: int = 0  # asked to remove, but too young (or of unknown age)
    # Why the check stopped before the end (a bound on files or time); empty: complete. A
    # truncated check proves nothing: check the subdirectories one by one.
    truncated: str = ""

    def issues(self, kind: str) -> IssueList:
        value = getattr(self, kind)
        assert isinstance(value, IssueList)
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def consistent(self) -> bool:
        """No problem left: every kind empty, stale uploads all removed, and checked to the
        end."""
        if self.truncated:
            return False
        left = self.stale_uploads.count - self.removed_stale_uploads.count
        others = (self.issues(k).count for k in KINDS if k != "stale_uploads")
        return left == 0 and not any(others)
