"""API models of metadata fields and values, metadata queries and datasets."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ctaprod.core.errors import InvalidInput
from ctaprod.core.metaquery import FieldType, check_field_name

__all__ = [
    "MAX_QUERY_PAGE", "DatasetCreate", "DatasetInfo", "DatasetStatus", "FieldDeclaration",
    "FieldInfo", "LfnPage", "MetaValue", "MetadataSet", "MetadataUnset", "MetadataView",
    "QueryCount", "QueryRequest", "check_dataset_name",
]  # fmt: skip

MAX_QUERY_PAGE = 10_000
MetaScalar = int | float | str | datetime
QueryInput = str | dict[str, Any]
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}")


def check_dataset_name(name: str) -> str:
    """A dataset name: letters, digits and ``_ . + -``, starting with a letter or digit."""
    if not isinstance(name, str) or not _DATASET_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid dataset name {name!r}: use letters, digits and '_.+-' "
            "(at most 255, starting with a letter or a digit)",
            name=name,
        )
    return name


class FieldDeclaration(BaseModel):
    """A metadata field to declare."""

    name: str
    type: FieldType
    description: str = Field("", max_length=255)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_field_name(value)

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> FieldType:
        return FieldType.parse(value)


class FieldInfo(BaseModel):
    name: str
    type: FieldType
    description: str = ""
    created: datetime


class MetaValue(BaseModel):
    """One effective value and where it was set (the file or one of its directories)."""

    field: str
    value: MetaScalar
    type: FieldType
    origin: str = Field(description="Path of the directory or file the value is set on")


class MetadataView(BaseModel):
    """The metadata of a directory or a file: its own values and the effective ones."""

    path: str
    kind: Literal["directory", "file"]
    own: dict[str, MetaScalar]
    effective: list[MetaValue]


class MetadataSet(BaseModel):
    path: str
    values: dict[str, Any] = Field(min_length=1)


class MetadataUnset(BaseModel):
    path: str
    fields: list[str] = Field(min_length=1)


class QueryRequest(BaseModel):
    """A metadata query (mapping, dict-literal text or compact text) under an optional path."""

    query: QueryInput = Field(default="", description="e.g. 'particle=gamma thetaP>=20'")
    path: str | None = Field(None, description="Only files under this directory")
    cursor: str | None = Field(None, description="next_cursor of the previous page")
    limit: int = Field(1000, ge=1, le=MAX_QUERY_PAGE)


class LfnPage(BaseModel):
    lfns: list[str]
    next_cursor: str | None = None


class QueryCount(BaseModel):
    count: int
    total_size: int


class DatasetStatus(StrEnum):
    DYNAMIC = "Dynamic"
    FROZEN = "Frozen"


class DatasetCreate(BaseModel):
    name: str
    query: QueryInput
    description: str = Field("", max_length=1024)
    frozen: bool = Field(False, description="Freeze the file list at creation")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dataset_name(value)


class DatasetInfo(BaseModel):
    """A dataset; ``file_count`` and ``total_size`` are computed now for dynamic ones."""

    name: str
    owner: str
    owner_group: str
    query: str = Field(description="The query in the compact text form")
    query_dict: dict[str, dict[str, Any]] = Field(description="The query as a mapping")
    status: DatasetStatus
    description: str = ""
    created: datetime
    frozen_at: datetime | None = None
    file_count: int | None = None
    total_size: int | None = None
