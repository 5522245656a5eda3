"""Users' home directories in the file catalog: ``/ctao/user/<initial>/<name>``.

A user's home belongs to them and to the group they were created in, so that their jobs can
write OutputData there (the pilot's default output directory is under it). The directories
above (``/ctao``, ``/ctao/user``, ``/ctao/user/<initial>``) belong to the administrator, not to
whichever user happened to write first, so that every user can be given a home. Homes are made
when a user is created and, for users made before homes existed, by ``ensure_all_homes`` (run
on ``db upgrade`` and at every server start: it is idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from ctaprod.core.errors import InvalidInput
from ctaprod.core.lfn import ROOT, check_lfn
from ctaprod.db.catalog import DirRow
from ctaprod.logic.catalog_access import USER_ROOT, retrying
from ctaprod.logic.context import Context

VO_ROOT = "/ctao"
# Owner of the directories above the homes: the user and group that ``bootstrap`` creates.
ADMIN_USER = "admin"
ADMIN_GROUP = "ctao_admin"


def home_dir(user: str) -> str:
    """The home directory of ``user`` (DIRAC's user-area layout)."""
    return f"{USER_ROOT}/{user[:1]}/{user}"


def _valid_home(user: str) -> bool:
    """False for the user names (``.``, ``..``, a leading dot) that make no valid LFN."""
    try:
        check_lfn(home_dir(user))
    except InvalidInput:
        return False
    return True


def _admin_dirs(users: Mapping[str, str]) -> list[str]:
    """The directories above the homes of ``users``, root first."""
    initials = sorted({f"{USER_ROOT}/{name[:1]}" for name in users})
    return [ROOT, VO_ROOT, USER_ROOT, *initials]


def ensure_homes(ctx: Context, conn: Connection, users: Mapping[str, str]) -> list[str]:
    """Create or fix the homes of ``users`` (name -> group) inside the caller's transaction.

    Missing directories are created; the user root and initial directories are given to the
    administrator, each home to its user (and, when created here, the given group). Returns
    the homes that were created or given back to their user. A concurrent creation of the
    same directory raises IntegrityError (run the transaction under ``retrying``).
    """
    users = {name: group for name, group in users.items() if _valid_home(name)}
    if not users:
        return []
    homes = {home_dir(name): (name, group) for name, group in users.items()}
    admin_dirs = _admin_dirs(users)
    known = ctx.catalog.dirs_by_path(conn, [*admin_dirs, *homes])
    now = ctx.clock()
    created: list[DirRow] = []
    for path in admin_dirs:
        if path not in known:
            created += ctx.catalog.create_dirs(conn, [path], known, ADMIN_USER, ADMIN_GROUP, now)
    wrong = [known[p].dir_id for p in admin_dirs[2:] if known[p].owner != ADMIN_USER]
    ctx.catalog.set_dir_owner(conn, wrong, ADMIN_USER, ADMIN_GROUP)
    changed: list[str] = []
    for path, (name, group) in sorted(homes.items()):
        existing = known.get(path)
        if existing is None:
            created += ctx.catalog.create_dirs(conn, [path], known, name, group, now)
            changed.append(path)
        elif existing.owner != name:
            ctx.catalog.set_dir_owner(conn, [existing.dir_id], name, group or existing.owner_group)
            changed.append(path)
    pairs = [(row.dir_id, row.parent_id) for row in created if row.parent_id is not None]
    if pairs:
        ctx.meta.inherit_dirs(conn, pairs)
    return changed


def home_groups(ctx: Context, conn: Connection) -> dict[str, str]:
    """Every user with the group their home gets: their first group by name (or none)."""
    groups: dict[str, list[str]] = {row["name"]: [] for row in ctx.auth.users(conn)}
    for user, group in ctx.auth.memberships(conn):
        groups.setdefault(user, []).append(group)
    return {user: min(names) if names else "" for user, names in groups.items()}


def ensure_all_homes(ctx: Context) -> list[str]:
    """Give every user without a home directory one, and the directories above the homes to
    the administrator (idempotent: writes nothing when all is in place); returns the homes
    created or given back to their user."""

    def body() -> list[str]:
        with ctx.db.write() as conn:
            return ensure_homes(ctx, conn, home_groups(ctx, conn))

    return retrying(body)
