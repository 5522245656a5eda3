"""What the API and the CLI show of productions (pydantic models, JSON-ready)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ctaprod.core.trans_views import DryRun


class StepView(BaseModel):
    """A step and where its transformation stands."""

    step_id: str
    name: str = ""
    parents: list[str] = Field(default_factory=list)
    trans_id: int
    trans_name: str
    trans_status: str
    input_complete: bool = False
    files: dict[str, int] = Field(default_factory=dict, description="Files by status")
    tasks: dict[str, int] = Field(default_factory=dict, description="Tasks by status")


class StepStatus(StepView):
    """A step with its jobs and failures (the live view)."""

    jobs: dict[str, int] = Field(default_factory=dict, description="Jobs by status")
    failures: dict[str, int] = Field(
        default_factory=dict, description="Failed tasks by reason (the most frequent first)"
    )


class ProductionView(BaseModel):
    prod_id: int
    name: str
    description: str = ""
    owner: str
    owner_group: str
    status: str
    created: datetime
    last_update: datetime
    validation_status: str
    validation_summary: dict[str, Any] | None = None
    validated: datetime | None = None
    validated_by: str | None = None
    definition: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepView] = Field(default_factory=list)


class ProductionStatusView(BaseModel):
    prod_id: int
    name: str
    status: str
    validation_status: str
    steps: list[StepStatus] = Field(default_factory=list)


class StepDryRun(BaseModel):
    step_id: str
    parents: list[str] = Field(default_factory=list)
    trans_name: str
    input_query: str | None = Field(
        None, description="With stand-in ids for the parents (known at creation)"
    )
    dry_run: DryRun


class ProductionDryRun(BaseModel):
    """What a submission would create, nothing created."""

    name: str
    format: str
    definition: dict[str, Any]
    steps: list[StepDryRun]


class ProdLogEntry(BaseModel):
    time: datetime
    author: str
    action: str
    message: str = ""


class ValidationOutcome(BaseModel):
    """What a validation run stores on the production."""

    prod_id: int
    validation_status: str
    summary: dict[str, Any] = Field(default_factory=dict)
    report: dict[str, Any] = Field(default_factory=dict, description="The full report")
