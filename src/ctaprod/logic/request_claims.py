"""Claims on requests are leases: who executes a request, and until when.

An executor pass claims due Waiting requests (Waiting -> Assigned through the request door,
with ``assigned_by`` = the pass's claim name and ``lease_until`` = now + a lease). While it
works, the executor renews the leases of its claim (:func:`renew_leases`); when it dies, the
renewals stop and the next pass of any executor releases the requests whose lease passed
(:func:`release_expired`: Assigned -> Waiting, due now). Only the holder of a live claim may
move its request on (:func:`held_by`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ctaprod.core.requests import RequestStatus
from ctaprod.core.statemachine import Change
from ctaprod.logic.context import Context
from ctaprod.logic.request_states import change_requests

log = logging.getLogger("ctaprod.requests")
R = RequestStatus
SOURCE = "RequestExecutor"


def new_claim(worker: str) -> str:
    """A claim name unique to one executor pass: ``worker`` plus a random suffix."""
    return f"{worker[:100]}#{uuid.uuid4().hex[:12]}"


def lease_seconds(ctx: Context) -> float:
    return ctx.settings.data.request_lease_seconds


def held_by(row: Mapping[Any, Any], claim: str) -> bool:
    """Whether the request (row read under lock) is Assigned to ``claim``."""
    return bool(row["status"] == R.ASSIGNED and row["assigned_by"] == claim)


def renew_leases(ctx: Context, claim: str, now: datetime | None = None) -> int:
    """Extend the leases of the requests ``claim`` still holds by a full lease from ``now``;
    how many it holds. The executor calls it (every third of a lease) while it works."""
    now = now or ctx.clock()
    with ctx.db.write() as conn:
        return ctx.requests.renew_leases(conn, claim, now + timedelta(seconds=lease_seconds(ctx)))


def claim_due(
    ctx: Context,
    conn: Connection,
    now: datetime,
    limit: int,
    claim: str,
    *,
    lease_until: datetime | None = None,
    replica: int = 0,
    replicas: int = 1,
) -> list[int]:
    """Claim up to ``limit`` Waiting requests due at ``now`` for ``claim`` (unique to this
    pass), leased until ``lease_until`` (default: a lease from now); their IDs, sorted.

    The candidates are read locked (SKIP LOCKED where the engine has it, so concurrent
    executors take different rows) and moved through the door conditionally on Waiting, so
    a request is never claimed twice."""
    until = lease_until or now + timedelta(seconds=lease_seconds(ctx))
    rows = ctx.requests.due(conn, now, limit, replica=replica, replicas=replicas)
    step = Change(R.ASSIGNED, values={"assigned_by": claim, "lease_until": until})
    result = change_requests(
        ctx,
        conn,
        list(rows),
        lambda row: [step] if row["status"] == R.WAITING else None,
        source=SOURCE,
        now=now,
        known=rows,
    )
    if result.missed:  # pragma: no cover - the rows are locked (SQLite: one writer)
        log.warning("claims missed (taken meanwhile): %s", sorted(result.missed_ids()))
    return sorted(result.applied_ids())


def release_expired(
    ctx: Context, conn: Connection, now: datetime, ids: Sequence[int] = ()
) -> list[int]:
    """Assigned requests whose lease passed (their executor died) back to Waiting, due now
    (with ``ids``, only those); the IDs released."""
    unleased_before = now - timedelta(seconds=lease_seconds(ctx))
    rows = ctx.requests.expired(conn, now, unleased_before, ids)
    step = Change(R.WAITING, values={"assigned_by": "", "not_before": now})
    result = change_requests(
        ctx,
        conn,
        list(rows),
        lambda row: [step] if row["status"] == R.ASSIGNED else None,
        source=SOURCE,
        now=now,
        known=rows,
    )
    if result.applied:
        log.info("released from dead executors: %s", sorted(result.applied_ids()))
    return sorted(result.applied_ids())
