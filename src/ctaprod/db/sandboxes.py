"""Sandbox records (content-addressed archives) and their assignment to jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from ctaprod.db.tables import sandbox_refs, sandboxes


class SandboxDB:
    def find(self, conn: Connection, sha256: str, owner: str) -> RowMapping | None:
        return (
            conn.execute(
                select(sandboxes).where(sandboxes.c.sha256 == sha256, sandboxes.c.owner == owner)
            )
            .mappings()
            .first()
        )

    def any_copy(self, conn: Connection, sha256: str) -> RowMapping | None:
        """Any record of this content (storage is shared between owners)."""
        return (
            conn.execute(select(sandboxes).where(sandboxes.c.sha256 == sha256).limit(1))
            .mappings()
            .first()
        )

    def add(self, conn: Connection, row: Mapping[str, Any]) -> int:
        res = conn.execute(insert(sandboxes).returning(sandboxes.c.sb_id), [dict(row)])
        return int(res.scalar_one())

    def touch(self, conn: Connection, sb_ids: Sequence[int], now: datetime) -> None:
        if sb_ids:
            conn.execute(
                update(sandboxes).where(sandboxes.c.sb_id.in_(list(sb_ids))).values(last_access=now)
            )

    def owned(self, conn: Connection, shas: Sequence[str], owner: str) -> dict[str, int]:
        """sha256 -> sb_id for the given contents that ``owner`` has uploaded."""
        if not shas:
            return {}
        rows = conn.execute(
            select(sandboxes.c.sha256, sandboxes.c.sb_id).where(
                sandboxes.c.sha256.in_(list(shas)), sandboxes.c.owner == owner
            )
        )
        return {r.sha256: r.sb_id for r in rows}

    def assign(self, conn: Connection, refs: Sequence[Mapping[str, Any]]) -> None:
        """Attach sandboxes to jobs: rows of (job_id, kind, sb_id)."""
        if refs:
            conn.execute(insert(sandbox_refs), list(refs))

    def of_job(self, conn: Connection, job_id: int, kind: str) -> list[RowMapping]:
        rows = conn.execute(
            select(sandboxes)
            .join(sandbox_refs, sandbox_refs.c.sb_id == sandboxes.c.sb_id)
            .where(sandbox_refs.c.job_id == job_id, sandbox_refs.c.kind == kind)
            .order_by(sandboxes.c.sb_id)
        )
        return list(rows.mappings())

    def of_jobs(self, conn: Connection, job_ids: Sequence[int], kind: str) -> dict[int, list[str]]:
        """The SHA-256 of the ``kind`` sandboxes of each of ``job_ids`` (in sandbox order);
        jobs without any are left out."""
        out: dict[int, list[str]] = {}
        if not job_ids:
            return out
        rows = conn.execute(
            select(sandbox_refs.c.job_id, sandboxes.c.sha256)
            .join(sandbox_refs, sandbox_refs.c.sb_id == sandboxes.c.sb_id)
            .where(sandbox_refs.c.job_id.in_(sorted(set(job_ids))), sandbox_refs.c.kind == kind)
            .order_by(sandbox_refs.c.job_id, sandboxes.c.sb_id)
        )
        for job_id, sha in rows:
            out.setdefault(int(job_id), []).append(str(sha))
        return out

    def detach(self, conn: Connection, job_id: int, kind: str, sb_id: int) -> None:
        conn.execute(
            delete(sandbox_refs).where(
                sandbox_refs.c.job_id == job_id,
                sandbox_refs.c.kind == kind,
                sandbox_refs.c.sb_id == sb_id,
            )
        )

    def unassign_jobs(self, conn: Connection, job_ids: Sequence[int]) -> None:
        for i in range(0, len(job_ids), 900):
            conn.execute(
                delete(sandbox_refs).where(sandbox_refs.c.job_id.in_(job_ids[i : i + 900]))
            )

    def unreferenced(self, conn: Connection, older_than: datetime, limit: int) -> list[RowMapping]:
        """Sandboxes no job points to, not accessed since ``older_than``."""
        used = select(sandbox_refs.c.sb_id).distinct()
        rows = conn.execute(
            select(sandboxes)
            .where(sandboxes.c.sb_id.not_in(used), sandboxes.c.last_access < older_than)
            .limit(limit)
        )
        return list(rows.mappings())

    def remove(self, conn: Connection, sb_ids: Sequence[int]) -> None:
        if sb_ids:
            conn.execute(delete(sandboxes).where(sandboxes.c.sb_id.in_(list(sb_ids))))

    def copies(self, conn: Connection, sha256: str) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(sandboxes).where(sandboxes.c.sha256 == sha256)
            ).scalar_one()
        )
