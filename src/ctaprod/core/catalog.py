"""File catalog models shared by the server, the client, the job wrapper and the agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ctaprod.core.lfn import check_lfn

__all__ = [
    "CHECKSUM_TYPE",
    "Count",
    "DirEntry",
    "DirInfo",
    "DirPage",
    "FileInfo",
    "FileLookup",
    "FileRegistration",
    "LfnList",
    "MkdirRequest",
    "Relative",
    "ReplicaRef",
    "check_adler32",
]

CHECKSUM_TYPE = "ADLER32"
_HEX = frozenset("0123456789abcdef")


def check_adler32(value: str) -> str:
    """An ADLER32 as 8 lowercase hex digits (shorter values are zero-padded, as DIRAC does)."""
    text = value.strip().lower()
    if not text or len(text) > 8 or not set(text) <= _HEX:
        raise ValueError(f"checksum {value!r} is not an ADLER32 (up to 8 hex digits)")
    return text.zfill(8)


class FileRegistration(BaseModel):
    """A file to enter in the catalog, with its first replica and what it came from."""

    lfn: str
    size: int = Field(ge=0)
    checksum: str
    guid: str | None = Field(None, max_length=36, description="Generated when not given")
    se: str | None = Field(None, max_length=64, description="SE holding the first replica")
    metadata: dict[str, Any] = Field(default_factory=dict)
    parents: list[str] = Field(default_factory=list, description="Ancestor LFNs (provenance)")

    @field_validator("lfn")
    @classmethod
    def _lfn(cls, value: str) -> str:
        return check_lfn(value)

    @field_validator("checksum")
    @classmethod
    def _checksum(cls, value: str) -> str:
        return check_adler32(value)

    @field_validator("parents")
    @classmethod
    def _parents(cls, value: list[str]) -> list[str]:
        return [check_lfn(v) for v in value]


class ReplicaRef(BaseModel):
    """One replica of one file: the pair (LFN, storage element)."""

    lfn: str
    se: str = Field(max_length=64)

    @field_validator("lfn")
    @classmethod
    def _lfn(cls, value: str) -> str:
        return check_lfn(value)


class FileInfo(BaseModel):
    """A catalog entry as the API returns it."""

    kind: Literal["file"] = "file"
    lfn: str
    size: int
    checksum: str
    checksum_type: str = CHECKSUM_TYPE
    guid: str
    owner: str
    owner_group: str
    status: str
    created: datetime
    replicas: list[str] = Field(default_factory=list, description="SE names")
    job_id: int | None = Field(None, description="The job that wrote the file, if a job did")
    attempt: int | None = Field(None, description="Its attempt (reschedule count)")


class DirInfo(BaseModel):
    """A catalog directory as the API returns it."""

    kind: Literal["dir"] = "dir"
    path: str
    owner: str
    owner_group: str
    created: datetime
    files: int = Field(0, description="Files directly in the directory")
    subdirs: int = Field(0, description="Directories directly in the directory")


class DirEntry(BaseModel):
    """One line of a directory listing: a subdirectory (``kind='dir'``) or a file.

    A plain listing (``long=false``) has the kind and the name only; the other fields are
    then None.
    """

    kind: Literal["dir", "file"]
    name: str
    owner: str | None = None
    owner_group: str | None = None
    created: datetime | None = None
    size: int | None = None
    checksum: str | None = None
    status: str | None = None


class DirPage(BaseModel):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next one."""

    entries: list[DirEntry]
    next_cursor: str | None = None


class LfnList(BaseModel):
    """A list of LFNs (request body)."""

    lfns: list[str]

    @field_validator("lfns")
    @classmethod
    def _lfns(cls, value: list[str]) -> list[str]:
        return [check_lfn(v) for v in value]


class FileLookup(BaseModel):
    """The catalog entries of the LFNs asked for; those not in the catalog in ``missing``."""

    files: list[FileInfo]
    missing: list[str] = Field(default_factory=list)


class MkdirRequest(BaseModel):
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_lfn(value)


class Relative(BaseModel):
    """An ancestor or descendant of a file, ``depth`` generations away (1: direct)."""

    lfn: str
    depth: int


class Count(BaseModel):
    count: int
