"""When could the system hear heartbeats? Liveness of API server processes.

Each API server process writes a row (up since, last beat) every
``liveness.server_beat_seconds``; an instance silent for ``liveness.missed_beats`` beats is
down. The current continuous up period is the union of the instances' periods (each
extended by that grace) that reaches now. Silence of a job is only counted inside it: a
server down longer than the failed window, restarted, must not reschedule every Running job
before its pilot could report.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ctaprod.db.liveness import LivenessDB
from ctaprod.logic.context import Context

API_SERVER = "api"
FORGET_AFTER = timedelta(days=7)  # rows of long-gone instances are dropped at start-up

_db = LivenessDB()


def _grace(ctx: Context) -> timedelta:
    s = ctx.settings.liveness
    return timedelta(seconds=s.server_beat_seconds * s.missed_beats)


def server_started(ctx: Context, instance: str, now: datetime | None = None) -> datetime:
    """Record the start of API server process ``instance``; returns its start time."""
    now = now or ctx.clock()
    with ctx.db.write() as conn:
        _db.forget(conn, API_SERVER, now - FORGET_AFTER)
        _db.beat(conn, API_SERVER, instance, now, now)
    return now


def server_beat(ctx: Context, instance: str, up_since: datetime) -> None:
    """Record that API server process ``instance`` (up since ``up_since``) is alive now."""
    with ctx.db.write() as conn:
        _db.beat(conn, API_SERVER, instance, up_since, ctx.clock())


def server_up_since(ctx: Context, now: datetime | None = None) -> datetime | None:
    """The start of the current continuous period during which some API server was up;
    ``now`` when none is up; None when no server ever recorded its liveness (nothing to
    go by: silence is counted as before)."""
    now = now or ctx.clock()
    with ctx.db.read() as conn:
        periods = _db.periods(conn, API_SERVER)
    if not periods:
        return None
    grace = _grace(ctx)
    ends = [(start, beat + grace) for start, beat in periods]
    live = [start for start, end in ends if end >= now]
    if not live:
        return now
    since = min(live)
    changed = True
    while changed:  # walk back through overlapping periods
        changed = False
        for start, end in ends:
            if start < since <= end:
                since, changed = start, True
    return since


def heard_since(
    ctx: Context, now: datetime | None = None, agent_start: datetime | None = None
) -> datetime | None:
    """Since when heartbeats could be heard without interruption: the later of the current
    server up period's start and ``agent_start``; None when nothing is known."""
    now = now or ctx.clock()
    times = [t for t in (server_up_since(ctx, now), agent_start) if t is not None]
    return max(times) if times else None
