"""Computing element plugins and the registry that builds them from queue configuration.

A plugin is a factory ``(name, QueueConfig, work_dir) -> ComputingElement`` registered under
the value of ``QueueConfig.ce_type``; HTCondor, Slurm or ARC support is added by calling
:func:`register_ce_type` (or adding an entry to ``CE_TYPES``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ctaprod.core.errors import InvalidInput
from ctaprod.core.settings import QueueConfig
from ctaprod.resources.computing.base import (
    PILOT_JOB_FINAL,
    ComputingElement,
    PilotJobStatus,
    PilotSpec,
)
from ctaprod.resources.computing.local import LocalComputingElement

__all__ = [
    "CE_TYPES",
    "PILOT_JOB_FINAL",
    "ComputingElement",
    "ComputingFactory",
    "LocalComputingElement",
    "PilotJobStatus",
    "PilotSpec",
    "create_computing_element",
    "register_ce_type",
]

ComputingFactory = Callable[[str, QueueConfig, Path], ComputingElement]


def _local(name: str, config: QueueConfig, work_dir: Path) -> ComputingElement:
    raw = config.options.get("slots", config.max_total)
    try:
        slots = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"queue {name}: option slots={raw!r} is not an integer", queue=name
        ) from None
    return LocalComputingElement(name, work_dir, max_slots=slots)


CE_TYPES: dict[str, ComputingFactory] = {"local": _local}


def register_ce_type(ce_type: str, factory: ComputingFactory) -> None:
    """Make ``factory`` build the computing elements of queues with ``ce_type=<ce_type>``."""
    CE_TYPES[ce_type.lower()] = factory


def create_computing_element(name: str, config: QueueConfig, work_dir: Path) -> ComputingElement:
    """Build the computing element of queue ``name``; ``work_dir`` is its private directory."""
    factory = CE_TYPES.get(config.ce_type.lower())
    if factory is None:
        known = ", ".join(sorted(CE_TYPES))
        raise InvalidInput(
            f"queue {name}: unknown CE type {config.ce_type!r} (known: {known})",
            queue=name,
            ce_type=config.ce_type,
        )
    return factory(name, config, work_dir)
