"""Transformation throughput: tasks made from Unused files, and jobs submitted from tasks.

1. Registers ``--files`` files (100,000) in the catalog with metadata (``obs`` on files, 100
   values; ``particle`` on their directories) in batches, through ``logic.registration``
   (not measured).
2. For each grouping (Standard by 1, Standard by 10, ByMetadata by ``obs`` up to 10), creates a
   started Processing transformation on all the files (their attachment at creation is timed
   too), then runs the task-creation turns of ``logic.trans_work.make_tasks`` until no file is
   Unused: tasks made per second.
3. Submits the tasks of the Standard-by-10 transformation... and of Standard-by-1 (10x more
   jobs) with ``submit_tasks`` turns until none is Created: jobs created per second (each
   turn: jobs with their descriptions, task queues, history, task links and statuses, in one
   transaction).
4. Checks: every file in exactly one task, no task twice, every task's job exists and points
   back to it.

In-process, as the agents run it (no server). Targets (issue 8): >= 5,000 tasks/s, >= 2,000
jobs/s.

    .venv/bin/python bench/transformations.py [--db sqlite|mysql|postgresql|URL] [--files N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

BASE = "/ctao/MC/Bench"


def populate(prep: C.Prepared, n: int) -> None:
    from ctaprod.core.catalog import FileRegistration
    from ctaprod.core.identity import Identity
    from ctaprod.core.metadata import FieldDeclaration
    from ctaprod.core.properties import TokenKind
    from ctaprod.logic import metadata as M
    from ctaprod.logic.registration import register_files

    ctx = prep.services.ctx
    admin = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
    for name, ftype in (("particle", "string"), ("obs", "int")):
        M.add_field(ctx, admin, FieldDeclaration(name=name, type=ftype))
    t0 = time.perf_counter()
    batch = 10_000
    for start in range(0, n, batch):
        regs = [
            FileRegistration(
                lfn=f"{BASE}/gamma/d{i // 1000:04d}/f{i:07d}",
                size=1000 + i,
                checksum="1",
                metadata={"obs": i % 100},
            )
            for i in range(start, min(n, start + batch))
        ]
        register_files(ctx, admin, regs, verify=False)
    M.set_metadata(ctx, admin, f"{BASE}/gamma", {"particle": "gamma"})
    print(f"# setup: {n:,} files registered in {time.perf_counter() - t0:.1f} s", flush=True)


def definition(name: str, plugin: str, size: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "Processing",
        "input_query": "particle=gamma",
        "plugin": plugin,
        "group_size": size,
        "job_template": {"Executable": "process.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}.h5",
        **kw,
    }


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--submit", type=int, default=20_000, help="tasks submitted per grouping")
    args = p.parse_args()
    table = C.Table(f"transformations.py results ({args.files:,} files)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        from sqlalchemy import func, select

        from ctaprod.core.identity import Identity
        from ctaprod.core.properties import TokenKind
        from ctaprod.db.tables import jobs, trans_task_files, trans_tasks
        from ctaprod.logic import trans_work as W
        from ctaprod.logic import transformations as T

        populate(prep, args.files)
        ctx = prep.services.ctx
        pm = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
        made: dict[str, int] = {}
        for name, plugin, size, extra in (
            ("std1", "Standard", 1, {}),
            ("std10", "Standard", 10, {}),
            ("bymeta10", "ByMetadata", 10, {"group_by": ["obs"]}),
        ):
            t0 = time.perf_counter()
            view = T.create(ctx, pm, definition(name, plugin, size, **extra), start=True)
            attach = time.perf_counter() - t0
            t0 = time.perf_counter()
            tasks = 0
            while n := W.make_tasks_of(ctx, view.trans_id):
                tasks += n
            secs = time.perf_counter() - t0
            made[name] = view.trans_id
            table.add(
                f"[{env.kind}] {plugin} by {size}: {args.files:,} files attached at creation in "
                f"{attach:.1f} s ({args.files / attach:,.0f} files/s); {tasks:,} tasks made in "
                f"{secs:.1f} s = {tasks / secs:,.0f} tasks/s (target >= 5,000)"
            )
        for name in ("std10", "std1"):
            tid = made[name]
            t0 = time.perf_counter()
            submitted = 0
            while submitted < args.submit and (n := W.submit_tasks(ctx)):
                submitted += n
            secs = time.perf_counter() - t0
            table.add(
                f"[{env.kind}] submission ({name}): {submitted:,} jobs created from tasks in "
                f"{secs:.1f} s = {submitted / secs:,.0f} jobs/s (target >= 2,000)"
            )
            del tid
        with ctx.db.read() as conn:
            per_file = conn.execute(
                select(trans_task_files.c.file_id, trans_tasks.c.trans_id, func.count())
                .join(trans_tasks, trans_tasks.c.task_id == trans_task_files.c.task_id)
                .group_by(trans_task_files.c.file_id, trans_tasks.c.trans_id)
                .having(func.count() > 1)
            ).all()
            linked = conn.execute(
                select(func.count())
                .select_from(trans_tasks)
                .join(jobs, jobs.c.job_id == trans_tasks.c.job_id)
            ).scalar_one()
            submitted_tasks = conn.execute(
                select(func.count())
                .select_from(trans_tasks)
                .where(trans_tasks.c.job_id.is_not(None))
            ).scalar_one()
        ok = not per_file and linked == submitted_tasks
        table.add(
            f"  check: files in two tasks of one transformation: {len(per_file)}; submitted "
            f"tasks {submitted_tasks:,}, with their job in the DB {linked:,}: "
            f"{'OK' if ok else 'FAILED'}"
        )
    table.show()
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
