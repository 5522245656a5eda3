"""Who is calling: the identity carried by a verified bearer token."""

from __future__ import annotations

from dataclasses import dataclass, field

from ctaprod.core.errors import Forbidden
from ctaprod.core.properties import JOB_ADMIN_PROPERTIES, OPERATOR_PROPERTIES, Property, TokenKind


@dataclass(frozen=True)
class Identity:
    user: str
    group: str
    kind: TokenKind
    properties: frozenset[str] = field(default_factory=frozenset)
    jti: str = ""
    # Pilot session tokens: the registered pilot; job tokens: the pilot the job was matched to.
    pilot_id: int | None = None
    job_id: int | None = None  # job tokens: the only job this token may act on
    attempt: int | None = None  # job tokens: the job's reschedule count when matched
    # A pilot's registration credential: the stamp of the one pilot record it may register.
    stamp: str | None = None

    @property
    def registration_only(self) -> bool:
        """A pilot token that is not (yet) a session: good for registering a pilot, nothing
        else (a factory pilot's single-use credential, or an admin-issued hand-start token)."""
        return self.kind is TokenKind.PILOT and self.pilot_id is None

    def has(self, *props: Property) -> bool:
        return any(p.value in self.properties for p in props)

    @property
    def is_job_admin(self) -> bool:
        return any(p.value in self.properties for p in JOB_ADMIN_PROPERTIES)

    @property
    def is_operator(self) -> bool:
        return any(p.value in self.properties for p in OPERATOR_PROPERTIES)

    def require(self, *props: Property) -> None:
        """Raise Forbidden unless the identity holds one of ``props``."""
        if not self.has(*props):
            names = " or ".join(p.value for p in props)
            raise Forbidden(f"{self.user}/{self.group} lacks the {names} property")

    def require_user(self) -> None:
        if self.kind is not TokenKind.USER:
            raise Forbidden(f"a {self.kind.value} token cannot be used for this")
