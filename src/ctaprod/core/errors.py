"""Domain errors. The API maps each class to one HTTP status; the CLI prints the message."""

from __future__ import annotations

from typing import Any


class CtaprodError(Exception):
    """Base class of all domain errors: a message meant for the user, plus structured detail."""

    code = "error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInput(CtaprodError):
    """The request is well-formed but its content is wrong (bad JDL, out-of-range value...)."""

    code = "invalid_input"


class NotFound(CtaprodError):
    code = "not_found"


class Unauthorized(CtaprodError):
    """Missing, malformed, expired or revoked credentials."""

    code = "unauthorized"


class Forbidden(CtaprodError):
    code = "forbidden"


class Conflict(CtaprodError):
    """The entity exists already, or changed under us."""

    code = "conflict"


class InvalidTransition(Conflict):
    """A state machine refused a transition; names the current state."""

    code = "invalid_transition"

    def __init__(
        self, entity: str, ident: object, current: str, target: str, why: str = ""
    ) -> None:
        text = f"{entity} {ident} is {current}: cannot go to {target}"
        if why:
            text += f" ({why})"
        super().__init__(text, entity=entity, id=ident, current=current, target=target)
        self.current = current
        self.target = target


class TooLarge(CtaprodError):
    code = "too_large"


class Unavailable(CtaprodError):
    """A dependency (storage element, batch system) cannot be reached now; retry later."""

    code = "unavailable"
