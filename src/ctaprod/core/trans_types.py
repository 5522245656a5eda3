"""Transformation types: what each type needs and makes, as a registry an extension adds to.

A type says whether its tasks read input files (an input query is then required, else
refused), whether they become jobs (a job template is required) or requests (the request
operation it makes, with arguments from the transformation's parameters), which grouping
plugins it allows, whether its tasks carry run numbers and whether it needs a maximum number
of tasks (a type without input would otherwise make tasks forever).

Built in (``TYPES``): MCSimulation (no input, jobs, run numbers, max_tasks required),
Processing and Merging (input, jobs, Standard/BySize/ByMetadata), Replication and Removal
(input, requests, Broadcast/Standard). The CTA extension registers its own (DataReprocessing,
Training, ApplyModel...) with :meth:`TypeRegistry.register`, or passes its own registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ctaprod.core.errors import InvalidInput

__all__ = ["TYPES", "TaskKind", "TransformationType", "TypeRegistry"]

ParameterCheck = Callable[[Mapping[str, Any]], None]


class TaskKind(StrEnum):
    JOB = "job"
    REQUEST = "request"


def _no_check(parameters: Mapping[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class TransformationType:
    """The contract of one transformation type (see the module docstring)."""

    name: str
    needs_input: bool
    tasks: TaskKind
    plugins: frozenset[str] = frozenset()
    default_plugin: str | None = None
    run_numbers: bool = False
    needs_max_tasks: bool = False
    # Requests: the operation each task's request holds (see core.requests).
    operation: str | None = None
    # Checks the per-transformation parameters (e.g. a Replication's target SEs).
    check_parameters: ParameterCheck = field(default=_no_check, compare=False)

    def __post_init__(self) -> None:
        if self.needs_input and self.default_plugin not in self.plugins:
            raise ValueError(f"type {self.name}: its default plugin must be one it allows")
        if self.run_numbers and self.needs_input:
            raise ValueError(f"type {self.name}: run numbers are for types without input")
        if (self.tasks is TaskKind.REQUEST) != (self.operation is not None):
            raise ValueError(f"type {self.name}: an operation is for request types only")


class TypeRegistry:
    """The transformation types by name (names compare without letter case)."""

    def __init__(self, types: Iterable[TransformationType] = ()) -> None:
        self._types: dict[str, TransformationType] = {}
        for ttype in types:
            self.register(ttype)

    def register(self, ttype: TransformationType) -> None:
        """Add a type; a name in use is refused rather than silently redefined."""
        if ttype.name.lower() in self._types:
            raise ValueError(f"transformation type {ttype.name!r} is registered already")
        self._types[ttype.name.lower()] = ttype

    def get(self, name: str) -> TransformationType:
        """The type called ``name``, or ``InvalidInput`` listing the known ones."""
        ttype = self._types.get(str(name).lower())
        if ttype is None:
            raise InvalidInput(
                f"type: unknown transformation type {name!r} (known: {', '.join(self.names())})",
                key="type",
            )
        return ttype

    def names(self) -> list[str]:
        return sorted(t.name for t in self._types.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._types


def _se_list(parameters: Mapping[str, Any], key: str) -> list[str]:
    value = parameters.get(key)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(
            f"parameters.{key}: a list of storage element names is required",
            key=f"parameters.{key}",
        )
    return value


def _replication(parameters: Mapping[str, Any]) -> None:
    _se_list(parameters, "target_ses")
    source = parameters.get("source_se")
    if source is not None and not isinstance(source, str):
        raise InvalidInput("parameters.source_se: a storage element name", key="parameters")


_GROUPED = frozenset({"Standard", "BySize", "ByMetadata"})
_PER_FILE = frozenset({"Broadcast", "Standard"})

TYPES = TypeRegistry(
    [
        TransformationType(
            "MCSimulation", False, TaskKind.JOB, run_numbers=True, needs_max_tasks=True
        ),
        TransformationType("Processing", True, TaskKind.JOB, _GROUPED, "Standard"),
        TransformationType("Merging", True, TaskKind.JOB, _GROUPED, "Standard"),
        TransformationType(
            "Replication",
            True,
            TaskKind.REQUEST,
            _PER_FILE,
            "Broadcast",
            operation="ReplicateAndRegister",
            check_parameters=_replication,
        ),
        TransformationType(
            "Removal",
            True,
            TaskKind.REQUEST,
            _PER_FILE,
            "Broadcast",
            operation="RemoveFile",
        ),
    ]
)
