"""Who may call what, for the use cases that share a rule (see docs/security.md).

Token kinds: a user token acts for its user with its group's properties; a pilot session
token acts for one registered pilot on the pilot routes only (register, match, its log, its
end); a job token acts for one job attempt, on that job's own objects (catalog writes under
its owner's rights, its sandboxes, requests, status). These helpers raise ``Forbidden``.
"""

from __future__ import annotations

from ctaprod.core.errors import Forbidden
from ctaprod.core.identity import Identity
from ctaprod.core.properties import Property, TokenKind

__all__ = ["refuse_pilot", "require_operator", "require_user_token"]


def refuse_pilot(ident: Identity, what: str) -> None:
    """A pilot token reads and changes nothing outside the pilot routes: what a job needs
    it gets through its job's token."""
    if ident.kind is TokenKind.PILOT:
        raise Forbidden(f"a pilot token cannot {what} (a job uses its own token)")


def require_user_token(ident: Identity, what: str) -> None:
    """Only a person's (user) token: not a pilot, not a job's payload."""
    if ident.kind is not TokenKind.USER:
        raise Forbidden(f"a {ident.kind.value} token cannot {what}")


def require_operator(ident: Identity, what: str) -> None:
    """A user token holding Operator or Admin."""
    require_user_token(ident, what)
    ident.require(Property.OPERATOR, Property.ADMIN)
