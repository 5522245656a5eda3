"""The catalog's namespace rules, shared by its reads, removals and registration.

Resolving LFNs to catalog rows, write permission on directories, creating missing
directories (``mkdir -p``) and retrying a transaction lost to a concurrent creation.

Permissions: every valid token may read. Writing into a directory needs a user or job token
whose user owns the directory, whose group is the directory's group, or which holds
ProductionManagement (or Admin). Inside the user area (``/ctao/user``) the group does not
count: every home belongs to the users' shared group, so only the owner (and the two
properties) write in a user's tree. The root ``/`` is open: any user may create top-level
directories, which then belong to them and their group. A new directory belongs to the
identity that creates it. A job token changes the catalog only while its attempt is the
job's current one (:func:`check_attempt`): a rescheduled or killed attempt is refused.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from ctaprod.core.errors import Conflict, Forbidden, TooLarge
from ctaprod.core.identity import Identity
from ctaprod.core.lfn import ROOT, check_lfn
from ctaprod.core.properties import Property, TokenKind
from ctaprod.db.catalog import DirRow, FileRow
from ctaprod.db.engine import is_deadlock
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import PAYLOAD, require_job_scope

T = TypeVar("T")
WRITE_PROPERTIES = (Property.PRODUCTION_MANAGEMENT, Property.ADMIN)
USER_ROOT = "/ctao/user"  # users' homes: /ctao/user/<initial>/<name>
_RETRIES = 3  # transactions lost to a concurrent creation of the same directory or file
_SHOWN = 10  # LFNs named in one error message


def split_lfn(lfn: str) -> tuple[str, str]:
    """(directory, name) of a checked LFN."""
    head, _, name = lfn.rpartition("/")
    return head or ROOT, name


def _dir_chain(directory: str) -> list[str]:
    """``directory`` and all its ancestors, root first."""
    if directory == ROOT:
        return [ROOT]
    parts = directory.split("/")
    return [ROOT] + ["/".join(parts[: i + 1]) for i in range(1, len(parts))]


def shown_names(items: Iterable[str]) -> str:
    """The first few of ``items``, sorted, for an error message ("and N more")."""
    items = sorted(set(items))
    text = ", ".join(items[:_SHOWN])
    return text + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def require_writer(ident: Identity) -> None:
    """Forbidden for a pilot token: only users and jobs change the catalog."""
    if ident.kind is TokenKind.PILOT:
        raise Forbidden("a pilot token cannot change the file catalog")


def check_attempt(ctx: Context, conn: Connection, ident: Identity, *, lock: bool = False) -> None:
    """Forbidden for a job token whose attempt is no longer its job's current one (the job
    was rescheduled, handed to another pilot, killed or has ended): the job-token rule of
    :func:`ctaprod.logic.job_scope.require_job_scope`; other tokens pass.

    ``lock`` (write transactions) holds the job's row until the transaction ends, so that a
    reschedule cannot slip between this check and the catalog write.
    """
    require_job_scope(ctx, conn, ident, allowed=PAYLOAD, lock=lock)


def check_batch(ctx: Context, n: int, what: str = "LFNs") -> None:
    """TooLarge when ``n`` items exceed ``settings.data.max_lfns_per_call``."""
    limit = ctx.settings.data.max_lfns_per_call
    if n > limit:
        raise TooLarge(f"{n} {what} in one call; the limit is {limit}")


def _may_write(ident: Identity, directory: DirRow) -> bool:
    # The root is open: any user may create top-level directories.
    return directory.path == ROOT or may_write_in(
        ident, directory.path, directory.owner, directory.owner_group
    )


def may_write_in(ident: Identity, path: str, owner: str, owner_group: str) -> bool:
    """The namespace rule for writing at ``path`` (a directory of ``owner``/``owner_group``,
    or an entry in it): the owner, the group outside the user area, or the properties."""
    return (
        ident.has(*WRITE_PROPERTIES)
        or ident.user == owner
        or (ident.group == owner_group and not _in_user_area(path))
    )


def _in_user_area(path: str) -> bool:
    """True inside a user's home tree, where group membership grants no write."""
    return path.startswith(USER_ROOT + "/")


def _nearest(directory: str, known: dict[str, DirRow]) -> DirRow | None:
    for path in reversed(_dir_chain(directory)):
        if path in known:
            return known[path]
    return None


def _check_dirs_writable(ident: Identity, dirs: Iterable[str], known: dict[str, DirRow]) -> None:
    """Forbidden unless ``ident`` may write into each directory (or its nearest ancestor)."""
    for directory in sorted(set(dirs)):
        near = _nearest(directory, known)
        if near is not None and not _may_write(ident, near):
            raise Forbidden(
                f"{ident.user}/{ident.group} may not write into {near.path} (owner "
                f"{near.owner}, group {near.owner_group}), needed for {directory}",
                path=near.path,
            )


def check_write(ctx: Context, conn: Connection, ident: Identity, lfn: str) -> None:
    """Raise Forbidden unless ``ident`` may create ``lfn`` (nearest existing directory)."""
    require_writer(ident)
    check_dirs_writable(ctx, conn, ident, [split_lfn(check_lfn(lfn))[0]])


def check_dirs_writable(
    ctx: Context, conn: Connection, ident: Identity, directories: Iterable[str]
) -> None:
    """Raise Forbidden unless ``ident`` may create entries in each of ``directories``."""
    check_attempt(ctx, conn, ident)
    targets = set(directories)
    chains = {path for directory in targets for path in _dir_chain(directory)}
    _check_dirs_writable(ident, targets, ctx.catalog.dirs_by_path(conn, chains))


def resolve(
    ctx: Context, conn: Connection, lfns: Iterable[str]
) -> tuple[dict[str, FileRow], dict[str, DirRow]]:
    """The existing files among ``lfns`` and the directories holding them."""
    split = {lfn: split_lfn(lfn) for lfn in lfns}
    dirs = ctx.catalog.dirs_by_path(conn, {dn for dn, _ in split.values()})
    keys = {lfn: (dirs[dn].dir_id, name) for lfn, (dn, name) in split.items() if dn in dirs}
    rows = ctx.catalog.files_by_name(conn, keys.values())
    return {lfn: rows[k] for lfn, k in keys.items() if k in rows}, dirs


def writable_files(
    ctx: Context, conn: Connection, ident: Identity, lfns: set[str]
) -> dict[str, FileRow]:
    """The existing files among ``lfns``; Forbidden unless ``ident`` may write their dirs."""
    check_attempt(ctx, conn, ident)
    files, dirs = resolve(ctx, conn, lfns)
    by_id = {row.dir_id: row for row in dirs.values()}
    for lfn, row in files.items():
        if not _may_write(ident, by_id[row.dir_id]):
            directory = by_id[row.dir_id]
            raise Forbidden(
                f"{ident.user}/{ident.group} may not change {lfn} (directory owner "
                f"{directory.owner}, group {directory.owner_group})",
                lfn=lfn,
            )
    return files


def ensure_dirs(
    ctx: Context, conn: Connection, ident: Identity, targets: set[str], lookup: Iterable[str] = ()
) -> dict[str, DirRow]:
    """Check write access to ``targets`` and create the missing ones (``mkdir -p``).

    Returns the known directories (targets, their ancestors and those of ``lookup`` that
    exist): a name that is a file cannot become a directory (Conflict).
    """
    check_attempt(ctx, conn, ident, lock=True)
    chain = {p for t in targets for p in _dir_chain(t)}
    known = ctx.catalog.dirs_by_path(conn, chain | set(lookup))
    _check_dirs_writable(ident, targets, known)
    missing = sorted(chain - known.keys())
    if not missing:
        return known
    keys = {
        (known[split_lfn(p)[0]].dir_id, split_lfn(p)[1]): p
        for p in missing
        if p != ROOT and split_lfn(p)[0] in known
    }
    clash = ctx.catalog.files_by_name(conn, keys)
    if clash:
        raise Conflict(
            f"cannot create directory {shown_names(keys[k] for k in clash)}: it is a file"
        )
    created = ctx.catalog.create_dirs(conn, missing, known, ident.user, ident.group, ctx.clock())
    pairs = [(c.dir_id, c.parent_id) for c in created if c.parent_id is not None]
    if pairs:
        ctx.meta.inherit_dirs(conn, pairs)
    return known


def retrying(attempt_body: Callable[[], T]) -> T:
    """Run a write transaction body again when a concurrent writer created the same row, or
    when the database chose it as a deadlock victim (two registrations creating the same
    directory or file on MySQL/PostgreSQL)."""

    for attempt in range(_RETRIES):
        try:
            return attempt_body()
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise Conflict("the catalog changed concurrently too often; retry") from None
        except DBAPIError as exc:
            if not is_deadlock(exc):
                raise
            if attempt == _RETRIES - 1:
                raise Conflict("the catalog changed concurrently too often; retry") from None
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")
