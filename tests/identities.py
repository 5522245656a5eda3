"""Test identities made real: job tokens carry their owner's current rights, so the owner of
a test's jobs must exist, enabled, as a member of the job's group."""

from __future__ import annotations

from typing import Any

from ctaprod.core.identity import Identity


def ensure_member(ctx: Any, ident: Identity, tokens: Any = None) -> None:
    """Create what is missing of ``ident``'s user, group and membership (group properties:
    the identity's)."""
    with ctx.db.write() as conn:
        if ctx.auth.group(conn, ident.group) is None:
            ctx.auth.add_group(conn, ident.group, sorted(ident.properties), 1.0, "")
        if ctx.auth.user(conn, ident.user) is None:
            ctx.auth.add_user(conn, ident.user, "", ctx.clock())
        if (ident.user, ident.group) not in ctx.auth.memberships(conn, ident.user):
            ctx.auth.add_member(conn, ident.user, ident.group)
    if tokens is not None:
        tokens.forget_all()
