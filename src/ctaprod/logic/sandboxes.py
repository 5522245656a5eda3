"""Sandboxes: content-addressed (sha256) tar.gz archives on a storage element.

The API streams an upload into a temporary file while hashing and counting it; this module
checks the archive's members (no absolute names, no '..', no links), stores it once per
content and records who uploaded it. Jobs reference input sandboxes as ``SB:<sha256>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ctaprod.core.archive import check_members
from ctaprod.core.errors import Forbidden, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus
from ctaprod.core.properties import TokenKind
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import PAYLOAD, require_job_scope
from ctaprod.logic.jobs import check_access

J = JobStatus


def storage_path(sha256: str) -> str:
    return f"sandboxes/{sha256[:2]}/{sha256}.tar.gz"


def check_sha(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest")
    return sha256


def has_sandbox(ctx: Context, ident: Identity, sha256: str) -> bool:
    """Whether the caller has this content already (then it need not upload it again)."""
    check_sha(sha256)
    with ctx.db.read() as conn:
        return ctx.sandboxes.find(conn, sha256, ident.user) is not None


def store_sandbox(ctx: Context, ident: Identity, sha256: str, size: int, archive: Path) -> int:
    """Record an uploaded archive (already hashed and size-checked by the caller)."""
    return _store(ctx, ident, sha256, size, archive).sb_id


def accept_upload(
    ctx: Context, ident: Identity, sha256: str, size: int, archive: Path, job_id: int | None
) -> int:
    """Check and store an uploaded archive; with ``job_id``, attach it as that job's output.

    All or nothing: an upload refused at any step (identity, archive content, the job's
    state) leaves no blob and no record that this call created.
    """
    stored = _store(ctx, ident, sha256, size, archive)
    if job_id is None:
        return stored.sb_id
    try:
        attach_output(ctx, ident, job_id, stored.sb_id)
    except BaseException:
        _undo(ctx, stored)
        raise
    return stored.sb_id


@dataclass(frozen=True)
class _Stored:
    sb_id: int
    sha256: str
    se: str
    path: str
    new_record: bool
    new_blob: bool


def _store(ctx: Context, ident: Identity, sha256: str, size: int, archive: Path) -> _Stored:
    check_sha(sha256)
    if ident.kind is TokenKind.PILOT:
        raise Forbidden("pilot tokens cannot upload sandboxes")
    limits = ctx.settings.sandboxes
    check_members(archive, limits.max_members, max_total_size=limits.max_unpacked_bytes)
    se_name = limits.storage_element
    se = ctx.storage(se_name)
    path = storage_path(sha256)
    with ctx.db.read() as conn:
        require_job_scope(ctx, conn, ident, allowed=PAYLOAD)  # job tokens: while it runs
        existing = ctx.sandboxes.any_copy(conn, sha256)
    new_blob = existing is None or not se.exists(path)
    if new_blob:
        with archive.open("rb") as fh:
            se.put(path, fh)
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            row = ctx.sandboxes.find(conn, sha256, ident.user)
            if row is not None:
                ctx.sandboxes.touch(conn, [int(row["sb_id"])], now)
                return _Stored(int(row["sb_id"]), sha256, se_name, path, False, new_blob)
            sb_id = ctx.sandboxes.add(
                conn,
                {
                    "sha256": sha256,
                    "owner": ident.user,
                    "owner_group": ident.group,
                    "size": size,
                    "se": se_name,
                    "path": path,
                    "created": now,
                    "last_access": now,
                },
            )
        return _Stored(sb_id, sha256, se_name, path, True, new_blob)
    except BaseException:
        if new_blob:
            _remove_blob_if_unused(ctx, sha256, se_name, path)
        raise


def _undo(ctx: Context, stored: _Stored) -> None:
    if stored.new_record:
        with ctx.db.write() as conn:
            ctx.sandboxes.remove(conn, [stored.sb_id])
    if stored.new_blob:
        _remove_blob_if_unused(ctx, stored.sha256, stored.se, stored.path)


def _remove_blob_if_unused(ctx: Context, sha256: str, se: str, path: str) -> None:
    with ctx.db.read() as conn:
        if ctx.sandboxes.copies(conn, sha256):
            return
    ctx.storage(se).remove(path)


def open_sandbox(ctx: Context, ident: Identity, sha256: str) -> BinaryIO:
    """A read stream of a sandbox the caller may see: their own upload, or (job tokens) the
    input sandbox of their job."""
    check_sha(sha256)
    with ctx.db.read() as conn:
        if ident.kind is TokenKind.JOB:
            require_job_scope(ctx, conn, ident, allowed=PAYLOAD)
            assert ident.job_id is not None
            rows = ctx.sandboxes.of_job(conn, ident.job_id, "input")
            row = next((r for r in rows if r["sha256"] == sha256), None)
        elif ident.is_job_admin:
            row = ctx.sandboxes.any_copy(conn, sha256)
        else:
            row = ctx.sandboxes.find(conn, sha256, ident.user)
    if row is None:
        raise NotFound(f"no sandbox {sha256} visible to you")
    return ctx.storage(row["se"]).open(row["path"])


def attach_output(ctx: Context, ident: Identity, job_id: int, sb_id: int) -> None:
    """Attach an uploaded output sandbox to the job whose wrapper uploaded it."""
    with ctx.db.write() as conn:
        if ident.kind is not TokenKind.JOB:
            raise Forbidden("output sandboxes are uploaded with the job's token")
        # Its own job, its current attempt, while the payload's wrapper runs.
        require_job_scope(ctx, conn, ident, job_id, allowed=PAYLOAD, lock=True)
        for old in ctx.sandboxes.of_job(conn, job_id, "output"):
            ctx.sandboxes.detach(conn, job_id, "output", int(old["sb_id"]))
        ctx.sandboxes.assign(conn, [{"job_id": job_id, "kind": "output", "sb_id": sb_id}])


def output_of(ctx: Context, ident: Identity, job_id: int) -> tuple[str, BinaryIO]:
    """The output sandbox of a job the caller may see: (sha256, stream)."""
    with ctx.db.read() as conn:
        state = ctx.jobs.states(conn, [job_id]).get(job_id)
        if state is None:
            raise NotFound(f"no job {job_id}")
        check_access(ident, state)
        rows = ctx.sandboxes.of_job(conn, job_id, "output")
    if not rows:
        raise NotFound(f"job {job_id} has no output sandbox (yet)")
    row = rows[-1]
    return str(row["sha256"]), ctx.storage(row["se"]).open(row["path"])


def remove_unused(ctx: Context, limit: int = 1000) -> int:
    """Delete sandboxes no job refers to, past the retention; storage freed when unshared."""
    from datetime import timedelta

    cutoff = ctx.clock() - timedelta(days=ctx.settings.sandboxes.unused_retention_days)
    with ctx.db.write() as conn:
        rows = ctx.sandboxes.unreferenced(conn, cutoff, limit)
        ctx.sandboxes.remove(conn, [int(r["sb_id"]) for r in rows])
        orphaned = [r for r in rows if ctx.sandboxes.copies(conn, r["sha256"]) == 0]
    for r in orphaned:
        ctx.storage(r["se"]).remove(r["path"])
    return len(rows)
