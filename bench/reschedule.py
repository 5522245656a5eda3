"""Reschedule and kill in bulk: statements per job and time, as the stalled-job agent runs them.

1. Submits ``--jobs`` jobs (10,000) through ``logic.jobs.submit_jobs`` and moves them to Running
   through the job door (not measured).
2. Reschedules all of them in one call inside one write transaction, as the stalled-job agent
   does (``reschedule_jobs(ctx, None, ids, strict=False, conn=...)``), and times it; every
   statement sent to the database is counted with a SQLAlchemy ``before_cursor_execute``
   listener (an executemany counts once: one round of the driver). The same for 100 jobs
   first, to show that the count does not depend on the number of jobs.
3. Kills them all in one call (``kill_jobs``: the jobs are Waiting again, so each leaves its
   task queue), counted and timed the same way.
4. Checks the database: every job rescheduled once, back in its task queue, then Killed and out
   of it, with one history row per step.

No server: rescheduling is done by the agents in-process, not through the HTTP API.

    .venv/bin/python bench/reschedule.py [--db sqlite|mysql|postgresql|URL] [--jobs N]
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

GROUPS = {"bench_users": 1.0}
USERS = {"alice": "bench_users"}


@contextmanager
def counting(engine: Any) -> Iterator[Counter[str]]:
    """Count the statements sent to the database in the block, by their first words."""
    from sqlalchemy import event

    seen: Counter[str] = Counter()

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen[" ".join(sql.split()[:3])] += 1

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def populate(prep: C.Prepared, n: int) -> list[int]:
    """n Running jobs of alice (submitted, then Matched -> Running through the door)."""
    from ctaprod.core.job_states import JobStatus
    from ctaprod.core.jobdesc import expand
    from ctaprod.logic.job_status import Step, transition_jobs
    from ctaprod.logic.jobs import submit_jobs

    ctx = prep.services.ctx
    alice = C.user_identity("alice", "bench_users")
    doc = {"Executable": "/bin/true", "CPUTime": 3600, "JobGroup": "reschedule_bench"}
    ids: list[int] = []
    step = min(ctx.limits.max_jobs_per_call, 5000)
    for start in range(0, n, step):
        descs = [d for _ in range(min(step, n - start)) for d in expand(doc, ctx.limits)]
        ids += submit_jobs(ctx, alice, descs).job_ids
    J = JobStatus
    with ctx.db.write() as conn:
        transition_jobs(
            ctx, conn, ids, lambda s: [Step(J.MATCHED, "bench"), Step(J.RUNNING, "bench")], "bench"
        )
        # The door's dequeue hook has done it; the code before the door had no such hook and
        # this script measures both (PYTHONPATH=<old checkout>/src).
        ctx.queues.dequeue(conn, ids)
    return ids


def measure(engine: Any, action: Callable[[], Any]) -> tuple[float, int, Counter[str]]:
    with counting(engine) as seen:
        t0 = time.perf_counter()
        action()
        dt = time.perf_counter() - t0
    return dt, sum(seen.values()), seen


def reschedule(prep: C.Prepared, ids: Sequence[int]) -> Callable[[], Any]:
    from ctaprod.logic.jobs import reschedule_jobs

    ctx = prep.services.ctx

    def run() -> None:
        with ctx.db.write() as conn:  # the stalled agent's transaction
            out = reschedule_jobs(ctx, None, ids, "bench", strict=False, conn=conn)
        assert len(out) == len(ids), (len(out), len(ids))

    return run


def kill(prep: C.Prepared, ids: Sequence[int]) -> Callable[[], Any]:
    from ctaprod.logic.jobs import kill_jobs

    alice = C.user_identity("alice", "bench_users")
    return lambda: kill_jobs(prep.services.ctx, alice, ids)


def check(prep: C.Prepared, ids: Sequence[int]) -> str:
    from sqlalchemy import func, select

    from ctaprod.db.tables import job_history, jobs, tq_jobs

    with prep.services.ctx.db.read() as conn:
        statuses = dict(
            conn.execute(
                select(jobs.c.status, func.count())
                .where(jobs.c.reschedule_count == 1)
                .group_by(jobs.c.status)
            ).all()
        )
        queued = conn.execute(select(func.count()).select_from(tq_jobs)).scalar_one()
        hist = dict(
            conn.execute(
                select(job_history.c.status, func.count()).group_by(job_history.c.status)
            ).all()
        )
    n = len(ids)
    good = (
        statuses == {"Killed": n}
        and queued == 0
        and all(hist.get(s) == n for s in ("Rescheduled", "Killed"))
        and hist.get("Waiting") == 2 * n  # at submission and after the reschedule
    )
    return (
        f"check: rescheduled once and Killed {statuses}, still queued {queued}, history "
        f"Rescheduled/Waiting/Killed {hist.get('Rescheduled')}/{hist.get('Waiting')}/"
        f"{hist.get('Killed')}: {'OK' if good else 'MISMATCH'}"
    )


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000, help="jobs to reschedule and kill")
    args = p.parse_args()
    n = args.jobs
    table = C.Table(f"reschedule.py results ({n:,} jobs)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        C.add_users(prep, GROUPS, USERS)
        engine = prep.services.ctx.db.engine
        small = populate(prep, 100)
        t_small, s_small, _ = measure(engine, reschedule(prep, small))
        k_small = measure(engine, kill(prep, small))
        big = populate(prep, n)
        t_big, s_big, seen = measure(engine, reschedule(prep, big))
        table.add(
            f"[{env.kind}] reschedule {n:,} Running jobs in one call (one transaction): "
            f"{t_big:.2f} s = {n / t_big:,.0f} jobs/s; {s_big} statements "
            f"({s_big / n:.4f} per job; {s_small} for 100 jobs, {t_small * 1000:.0f} ms)"
        )
        table.add("  statements: " + ", ".join(f"{k} x{v}" for k, v in seen.most_common()))
        t_kill, s_kill, seen = measure(engine, kill(prep, big))
        table.add(
            f"[{env.kind}] kill {n:,} Waiting jobs in one call: {t_kill:.2f} s = "
            f"{n / t_kill:,.0f} jobs/s; {s_kill} statements ({s_kill / n:.4f} per job; "
            f"{k_small[1]} for 100 jobs)"
        )
        table.add("  statements: " + ", ".join(f"{k} x{v}" for k, v in seen.most_common()))
        table.add("  " + check(prep, [*small, *big]))
        prep.services.ctx.db.dispose()
    table.show()


if __name__ == "__main__":
    main()
