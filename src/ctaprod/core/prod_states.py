"""The state machine of productions, and the outcome of their validation.

**Production.** New once submitted (its transformations exist, New); Active: its steps'
transformations run; Stopped: they are stopped (a ``start`` resumes them); Flush: the roots
were flushed (the last, smaller groups made), the children follow as their parents finish;
Completed: every step's transformation is Completed (detected by the production agent);
Cleaning: every step's transformation is being cleaned (jobs killed, outputs removed);
Cleaned is final.

**Validation** is kept beside the status, not in it: a production is validated when it is
Completed (or at any time, to see where it stands), and the outcome does not change what the
production does. NotValidated until a first run; Validating while one runs; Valid or Invalid
with the summary of the last report, when and by whom.
"""

from __future__ import annotations

from enum import StrEnum

from ctaprod.core.statemachine import Hook, StateMachine, table

__all__ = [
    "CLEANABLE",
    "DRIVEN",
    "PRODUCTION_MACHINE",
    "PROD_FINAL",
    "ProductionStatus",
    "ValidationStatus",
]


class ProductionStatus(StrEnum):
    NEW = "New"
    ACTIVE = "Active"
    STOPPED = "Stopped"
    FLUSH = "Flush"
    COMPLETED = "Completed"
    CLEANING = "Cleaning"
    CLEANED = "Cleaned"


class ValidationStatus(StrEnum):
    NOT_VALIDATED = "NotValidated"
    VALIDATING = "Validating"
    VALID = "Valid"
    INVALID = "Invalid"


PS = ProductionStatus
PROD_FINAL = frozenset({PS.CLEANED})
# Where the production agent watches the steps (cascading input-complete, completion).
DRIVEN = frozenset({PS.ACTIVE, PS.FLUSH})

PRODUCTION_MACHINE: StateMachine[ProductionStatus] = StateMachine(
    entity="production",
    transitions=table(
        [
            (PS.NEW, [PS.ACTIVE]),
            (PS.ACTIVE, [PS.STOPPED, PS.FLUSH, PS.COMPLETED]),
            (PS.STOPPED, [PS.ACTIVE, PS.CLEANING]),
            (PS.FLUSH, [PS.COMPLETED]),
            # An ``extend`` reopens a completed production (more MC tasks).
            (PS.COMPLETED, [PS.ACTIVE, PS.CLEANING]),
            (PS.CLEANING, [PS.CLEANED]),
            (PS.CLEANED, []),
        ]
    ),
    final=PROD_FINAL,
    # The production log: every change, who made it and when.
    hooks=(Hook("log"),),
)
CLEANABLE = PRODUCTION_MACHINE.sources(PS.CLEANING)
