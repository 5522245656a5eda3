"""Storage element and data-transfer models shared by the server, the client and the CLI.

The path of a file on any storage element is its LFN (under the SE's base path): see
:func:`se_path`. Job wrappers that write to an SE directly must use the same mapping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ctaprod.core.catalog import check_adler32
from ctaprod.core.lfn import check_lfn

__all__ = [
    "SECRET_WORDS",
    "UPLOAD_MARK",
    "Access",
    "AccessChange",
    "BanAccess",
    "FileUpload",
    "RemovalResult",
    "ReplicateRequest",
    "SEHistoryEntry",
    "StorageElementDetail",
    "StorageElementInfo",
    "StoredFile",
    "attempt_upload_path",
    "is_secret_option",
    "se_path",
    "upload_path",
]

Access = Literal["read", "write"]
BanAccess = Literal["read", "write", "both"]
# Option keys containing one of these are credentials: shown to pilots, jobs and admins only.
SECRET_WORDS = ("secret", "password", "key", "token")


def is_secret_option(key: str) -> bool:
    """Whether an SE option looks like a credential (``secret_key``, ``password``...)."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def se_path(lfn: str) -> str:
    """Where the file ``lfn`` lives on a storage element (relative to its base)."""
    return check_lfn(lfn)


# '~' is not an LFN character (core/lfn.py): no LFN anyone registers names a temporary file.
UPLOAD_MARK = "~ctaprod-upload-"
_KEPT_NAME = 150  # characters of the file name kept in a temporary name (file systems: 255)


def upload_path(lfn: str, tag: str) -> str:
    """The hidden SE path next to ``lfn``'s where an upload tagged ``tag`` lands before its
    rename into place: ``<dir>/.<name>~ctaprod-upload-<tag>``, never an LFN."""
    head, _, name = se_path(lfn).rpartition("/")
    return f"{head}/.{name[:_KEPT_NAME]}{UPLOAD_MARK}{tag}"


def attempt_upload_path(lfn: str, job_id: int, attempt: int) -> str:
    """Where attempt ``attempt`` of job ``job_id`` uploads ``lfn`` before the catalog accepts
    it: unique to the attempt, so two attempts of a job (or two jobs) never share a file, and
    known to the server, which removes an earlier attempt's leftover when a rerun replaces it."""
    return upload_path(lfn, f"job{job_id}-a{attempt}")


class StorageElementInfo(BaseModel):
    """A storage element: configuration plus run-time access (configured and not banned)."""

    name: str
    plugin: str
    endpoint: str = ""
    base_path: str = ""
    site: str = ""
    groups: list[str] = Field(default_factory=list)
    read: bool = True
    write: bool = True
    read_reason: str = Field("", description="Why reading is not allowed (empty if it is)")
    write_reason: str = Field("", description="Why writing is not allowed (empty if it is)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Plugin options; credentials only for jobs and admins"
    )


class SEHistoryEntry(BaseModel):
    """One change of an SE's run-time access."""

    se: str
    access: Access
    allowed: bool
    reason: str = ""
    author: str
    time: datetime


class StorageElementDetail(BaseModel):
    element: StorageElementInfo
    history: list[SEHistoryEntry] = Field(default_factory=list, description="Newest first")


class AccessChange(BaseModel):
    """A ban or an allow: which access, and why (a ban needs a reason)."""

    access: BanAccess = "both"
    reason: str = Field("", max_length=512)


class FileUpload(BaseModel):
    """What the uploader says of a file besides its bytes (size and checksum optional:
    when given they must match what arrives)."""

    lfn: str
    guid: str | None = Field(None, max_length=36)
    metadata: dict[str, Any] = Field(default_factory=dict)
    parents: list[str] = Field(default_factory=list)
    size: int | None = Field(None, ge=0)
    checksum: str | None = None

    @field_validator("lfn")
    @classmethod
    def _lfn(cls, value: str) -> str:
        return check_lfn(value)

    @field_validator("parents")
    @classmethod
    def _parents(cls, value: list[str]) -> list[str]:
        return [check_lfn(v) for v in value]

    @field_validator("checksum")
    @classmethod
    def _checksum(cls, value: str | None) -> str | None:
        return None if value is None else check_adler32(value)


class StoredFile(BaseModel):
    """A file (or a new replica) stored and registered: where, size and ADLER32."""

    lfn: str
    se: str
    size: int
    checksum: str
    copied: bool = Field(True, description="False when the replica was there already")


class ReplicateRequest(BaseModel):
    lfn: str
    target_se: str = Field(max_length=64)
    source_se: str | None = Field(None, max_length=64)

    @field_validator("lfn")
    @classmethod
    def _lfn(cls, value: str) -> str:
        return check_lfn(value)


class RemovalResult(BaseModel):
    """What a removal did: the SEs cleared, and those that failed with why."""

    lfn: str
    removed: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    file_removed: bool = False
