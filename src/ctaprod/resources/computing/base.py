"""The computing element plugin interface.

A computing element (CE) is a batch system front-end the pilot factory submits pilots to.
The factory identifies each pilot by its *stamp*; the CE answers with its own reference
for it (a batch job id, or the stamp itself) and reports coarse batch states.

A pilot's credential (:attr:`PilotSpec.credential`) is not part of its environment: a CE
hands it to the pilot process in a way its payloads cannot read -- the Local CE on an
inherited pipe (``CTAPROD_PILOT_TOKEN_FD``), a batch CE as a file of the batch job's own
sandbox given with ``--token-file`` and removed by the pilot once read. A CE never writes it
where a later process of the worker node could find it.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ctaprod.core.errors import InvalidInput

__all__ = [
    "CREDENTIAL_VARIABLES",
    "PILOT_JOB_FINAL",
    "ComputingElement",
    "PilotJobStatus",
    "PilotSpec",
    "check_specs",
    "check_stamp",
]

# Never in a pilot's environment: the CE would write it where payloads can read it.
CREDENTIAL_VARIABLES = ("CTAPROD_PILOT_TOKEN", "CTAPROD_TOKEN")
_STAMP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class PilotJobStatus(StrEnum):
    """The state of a pilot as seen by the batch system."""

    QUEUED = "Queued"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    ABORTED = "Aborted"
    UNKNOWN = "Unknown"


PILOT_JOB_FINAL = frozenset({PilotJobStatus.DONE, PilotJobStatus.FAILED, PilotJobStatus.ABORTED})


@dataclass(frozen=True)
class PilotSpec:
    """What to run as one pilot: ``argv`` with ``env`` added to a minimal environment, and
    the ``credential`` it registers with, handed over apart from ``env`` (see above)."""

    stamp: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir_hint: str = ""
    credential: str = field(default="", repr=False)


def check_stamp(stamp: str) -> str:
    """Return ``stamp`` if it is safe as a file name and batch job name, else InvalidInput."""
    if not isinstance(stamp, str) or not _STAMP.fullmatch(stamp):
        raise InvalidInput(
            f"invalid pilot stamp {stamp!r}: use 1-128 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit",
            stamp=stamp,
        )
    return stamp


def check_specs(specs: Sequence[PilotSpec]) -> None:
    """Validate a submission: good stamps, no duplicates, a non-empty argv of strings."""
    seen: set[str] = set()
    for spec in specs:
        check_stamp(spec.stamp)
        if spec.stamp in seen:
            raise InvalidInput(f"pilot stamp {spec.stamp} appears twice", stamp=spec.stamp)
        seen.add(spec.stamp)
        if not spec.argv or not all(isinstance(arg, str) for arg in spec.argv):
            raise InvalidInput(
                f"pilot {spec.stamp}: argv must be a non-empty list of strings", stamp=spec.stamp
            )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in spec.env.items()):
            raise InvalidInput(
                f"pilot {spec.stamp}: env must map strings to strings", stamp=spec.stamp
            )
        if not isinstance(spec.credential, str):
            raise InvalidInput(f"pilot {spec.stamp}: credential must be a string", stamp=spec.stamp)
        if any(k.startswith(CREDENTIAL_VARIABLES) for k in spec.env):
            raise InvalidInput(
                f"pilot {spec.stamp}: a credential goes in PilotSpec.credential, not in env",
                stamp=spec.stamp,
            )


class ComputingElement(abc.ABC):
    """A batch system front-end; one instance per configured queue."""

    name: str

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def submit(self, specs: Sequence[PilotSpec]) -> list[str]:
        """Submit one pilot per spec; return the CE references in the same order."""

    @abc.abstractmethod
    def status(self, refs: Sequence[str]) -> dict[str, PilotJobStatus]:
        """The batch state of each reference (UNKNOWN for references the CE does not know)."""

    @abc.abstractmethod
    def cancel(self, refs: Sequence[str]) -> None:
        """Cancel the pilots (queued or running); finished or unknown ones are ignored."""

    @abc.abstractmethod
    def output(self, ref: str) -> str:
        """The pilot's stdout and stderr as kept by the batch system; NotFound if unknown."""

    @abc.abstractmethod
    def available_slots(self) -> int | None:
        """How many more pilots the CE would start now; None when it cannot tell."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
