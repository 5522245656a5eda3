"""Security properties carried by groups, and what they allow."""

from __future__ import annotations

from enum import StrEnum


class Property(StrEnum):
    NORMAL_USER = "NormalUser"
    PRODUCTION_MANAGEMENT = "ProductionManagement"
    JOB_ADMINISTRATOR = "JobAdministrator"
    GENERIC_PILOT = "GenericPilot"
    OPERATOR = "Operator"
    ADMIN = "Admin"


class TokenKind(StrEnum):
    USER = "user"
    PILOT = "pilot"
    JOB = "job"


# Properties that let a user act on other users' jobs.
JOB_ADMIN_PROPERTIES = frozenset({Property.JOB_ADMINISTRATOR, Property.ADMIN})
# Properties that let a user change the configuration of the system (site mask, users...).
OPERATOR_PROPERTIES = frozenset({Property.OPERATOR, Property.ADMIN})
