"""What the API and the CLI show of transformations (pydantic models, JSON-ready)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class TransformationView(BaseModel):
    """A transformation with its files and tasks counted by status."""

    trans_id: int
    name: str
    type: str
    status: str
    owner: str
    owner_group: str
    description: str = ""
    input_query: str | None = None
    plugin: str | None = None
    group_size: int | None = None
    max_tasks: int | None = None
    max_errors: int
    tasks_created: int = 0
    input_complete: bool = False
    created: datetime
    last_update: datetime
    definition: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, int] = Field(default_factory=dict, description="Files by status")
    tasks: dict[str, int] = Field(default_factory=dict, description="Tasks by status")


class TransFileView(BaseModel):
    id: int
    file_id: int
    lfn: str | None = Field(None, description="None: the file left the catalog")
    status: str
    task_id: int | None = None
    error_count: int = 0
    last_error: str = ""
    failures: list[str] = Field(
        default_factory=list, description="The errors of its failed tasks (MaxReset files)"
    )
    last_update: datetime


class TaskView(BaseModel):
    task_id: int
    trans_id: int
    status: str
    run_number: int | None = None
    job_id: int | None = None
    request_id: int | None = None
    error: str = ""
    created: datetime
    submitted: datetime | None = None
    ended: datetime | None = None
    last_update: datetime
    inputs: list[str] = Field(default_factory=list, description="Input LFNs")


class TransLogEntry(BaseModel):
    time: datetime
    author: str
    action: str
    message: str = ""


class DryRun(BaseModel):
    """What a definition would do today, nothing created."""

    definition: dict[str, Any]
    matching_files: int = Field(description="Files the input query matches today")
    grouped_files: int = Field(
        0, description="Files grouped into the tasks below (the first 100,000 at most)"
    )
    sample_lfns: list[str] = Field(default_factory=list)
    tasks: int = Field(description="Tasks it would make now from them")
    leftover_files: int = Field(0, description="Files waiting for a fuller group (or a flush)")
    task_sizes: list[int] = Field(default_factory=list, description="Files of the first tasks")


class AttachResult(BaseModel):
    trans_id: int
    matching_files: int
    attached: int = Field(description="Files newly attached (as Unused)")
