"""The matcher under load: POST /api/pilots/{pilot_id}/match, sustained matches per second.

Setup (DB/logic layers, not measured): 10 users in 2 groups (shares 1 and 2) submit waiting
jobs (30,000 by default, 100,000 with ``--full``) through ``logic.jobs.submit_jobs``, spread
over 10 owners x 3 platforms x 5 tag sets x 7 CPU segments = 1,050 task queues.
Four pilots are registered through the API (2 with platform el9, 2 with el8; all with tags
cvmfs+singularity, no GPU), so each sees about half of the queues.

Measure: ``wrk -t2 -c4`` (4 concurrent requesters) with a Lua script POSTing the pilot's
Resource to /api/pilots/{id}/match with its pilot session token; ``--runs`` runs of
``--duration`` seconds after a 2 s warm-up; the median run is reported (200 = a job matched,
204 = nothing eligible).
Check: the number of Matched jobs in the DB equals the number of 200 responses over all runs
(no job matched twice), and each has exactly one Matched history entry.

Target (issue): >= 500 matches/s sustained.

    .venv/bin/python bench/match.py [--db sqlite|mysql|postgresql|URL] [--full] [--workers N]
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

GROUPS = {"bench_a": 1.0, "bench_b": 2.0}
USERS = {f"user{i:02d}": ("bench_a" if i < 5 else "bench_b") for i in range(10)}
PLATFORMS = ["", "el8", "el9"]
TAG_SETS = [[], ["cvmfs"], ["singularity"], ["cvmfs", "singularity"], ["GPU"]]
CPU_TIMES = [300, 1500, 3000, 20000, 40000, 80000, 150000]  # 7 distinct CPU segments
SITE = "BENCH.site.org"


def resource(platform: str) -> dict[str, object]:
    return {
        "site": SITE,
        "ce": "bench-ce",
        "queue": "bench",
        "platform": platform,
        "tags": ["cvmfs", "singularity"],
        "cpu_time_left": 200000,
        "memory_mb": 4096,
        "processors": 1,
    }


LUA = """
pilots = {pilots}
local mine = {{}}
local counter = 0
function init(args)
  for i, p in ipairs(pilots) do
    if (i - 1) % {threads} == tid then table.insert(mine, p) end
  end
  if #mine == 0 then mine = pilots end
end
ids = {{}}
function on_response(status, body)
  if status == 200 then
    ids[#ids + 1] = string.match(body, '"job_id":(%d+)')
  end
end
function on_done(threads)
  local f = io.open({ids_file}, "a")
  for _, t in ipairs(threads) do
    for _, id in ipairs(t:get("ids")) do f:write(id, "\\n") end
  end
  f:close()
end
function request()
  counter = counter + 1
  local p = mine[(counter % #mine) + 1]
  return wrk.format("POST", "/api/pilots/" .. (p.id + {id_shift}) .. "/match",
    {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. p.token}},
    p.body)
end
"""


def populate(prep: C.Prepared, n_jobs: int, submitted: int) -> int:
    """``n_jobs`` waiting jobs over all requirement combinations; returns the queues.

    The first ``submitted`` (at most) go through ``logic.jobs.submit_jobs``; the rest are
    copies of those made with INSERT ... SELECT (jobs, descriptions, tq_jobs rows at job_id +
    k * offset), so a million waiting jobs load in a minute or two; the queue counters are
    then recounted (``TaskQueueDB.check_counters``, when the code has counters)."""
    from sqlalchemy import func, insert, literal, select

    from ctaprod.core.jobs import JobDescription
    from ctaprod.db.tables import job_descriptions, jobs, task_queues, tq_jobs
    from ctaprod.logic.jobs import submit_jobs

    ctx = prep.services.ctx
    combos = list(itertools.product(PLATFORMS, map(tuple, TAG_SETS), CPU_TIMES))
    base = min(n_jobs, submitted)
    per_user = base // len(USERS)
    t0 = time.perf_counter()
    for user, group in USERS.items():
        descs = []
        for i in range(per_user):
            platform, tags, cpu = combos[i % len(combos)]
            descs.append(
                JobDescription.model_validate(
                    {
                        "Executable": "/bin/true",
                        "Arguments": f"{i}",
                        "JobName": f"{user}_{i}",
                        "JobGroup": f"grp{i % 7}",
                        "CPUTime": cpu,
                        "Platform": platform,
                        "Tags": list(tags),
                        "Priority": 1 + i % 3,
                    }
                )
            )
        ident = C.user_identity(user, group)
        for k in range(0, len(descs), 5000):
            submit_jobs(ctx, ident, descs[k : k + 5000])
    base = per_user * len(USERS)
    with ctx.db.read() as conn:
        top = int(conn.execute(select(func.max(jobs.c.job_id))).scalar_one())
    copies = -(-n_jobs // base) - 1  # ceil
    for k in range(1, copies + 1):
        off = k * top
        n = min(base, n_jobs - k * base)
        last = top - base + n  # the submitted jobs are the ids top-base+1 .. top
        with ctx.db.write() as conn:
            for table in (jobs, job_descriptions, tq_jobs):
                cols = [c.name for c in table.columns]
                exprs = [
                    (table.c.job_id + literal(off)).label("job_id") if c == "job_id" else table.c[c]
                    for c in cols
                ]
                conn.execute(
                    insert(table).from_select(cols, select(*exprs).where(table.c.job_id <= last))
                )
        print(f"#   copy {k}/{copies}: {base + (k - 1) * base + n} jobs", flush=True)
    check = getattr(ctx.queues, "check_counters", None)
    if check is not None:
        quiet = logging.getLogger("ctaprod.db.taskqueues")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # every copied queue "drifted": expected here
        with ctx.db.write() as conn:
            check(conn)
        quiet.setLevel(level)
    if prep.services.ctx.db.dialect == "postgresql":
        with ctx.db.write() as conn:  # the copies were inserted with explicit ids
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('jobs', 'job_id'), "
                "(SELECT max(job_id) FROM jobs))"
            )
    with ctx.db.read() as conn:
        nq = conn.execute(select(func.count()).select_from(task_queues)).scalar_one()
        nj = conn.execute(select(func.count()).select_from(tq_jobs)).scalar_one()
    print(
        f"# setup: {nj} waiting jobs ({base} submitted, the rest copied) in {nq} task queues "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return int(nq)


def show_plans(prep: C.Prepared, engine: str) -> None:
    """EXPLAIN the statements that TaskQueueDB.claim and TaskQueueDB.loads really send (captured
    from the driver), on the largest queue; the claim is rolled back."""
    from sqlalchemy import func, select

    from ctaprod.db.tables import tq_jobs

    ctx = prep.services.ctx
    with ctx.db.read() as conn:
        tq = conn.execute(
            select(tq_jobs.c.tq_id, func.count())
            .group_by(tq_jobs.c.tq_id)
            .order_by(func.count().desc())
            .limit(1)
        ).first()
    assert tq is not None
    for label, call in (
        (
            f"claim (TaskQueueDB.claim) on a queue of {tq[1]} jobs",
            lambda c: ctx.queues.claim(c, tq[0]),
        ),
        ("snapshot (TaskQueueDB.loads)", lambda c: ctx.queues.loads(c)),
    ):
        conn_cm = ctx.db.engine.connect()
        with conn_cm as conn:
            trans = conn.begin()
            with C.capture_sql(conn) as seen:
                t0 = time.perf_counter()
                call(conn)
                dt = time.perf_counter() - t0
            print(f"\n# {label} on {engine}: {len(seen)} statement(s), {1000 * dt:.2f} ms")
            for sql, params in seen:
                print(f"  {C.one_line(sql)}  {params}")
                if sql.lstrip().upper().startswith("SELECT"):
                    print(C.explain(conn, engine, sql, params))
            trans.rollback()


def in_process(prep: C.Prepared, n: int) -> tuple[str, str]:
    """The matcher without HTTP, in this process: median time of 5 snapshot refreshes, and
    CPU per match over ``n`` matches of one el9 pilot (CPU time, not wall time: it holds on a
    machine shared with other work, where wall times do not)."""
    import statistics

    from ctaprod.core.matching import Resource
    from ctaprod.logic import runtime

    svc = prep.services
    ident = svc.tokens.verify(prep.pilot_token)
    reg = runtime.register_pilot(svc.ctx, svc.tokens, ident, "inproc", SITE, "bench-ce", "bench")
    session = svc.tokens.verify(reg.session_token)
    res = Resource.model_validate(resource("el9"))
    refresh = []
    svc.matcher.snapshot()
    svc.matcher.snapshot_seconds = 0.0  # every call refreshes, as a server does each second
    for _ in range(5):
        t0 = time.perf_counter()
        svc.matcher.snapshot()
        refresh.append(time.perf_counter() - t0)
    svc.matcher.snapshot_seconds = 1.0
    for _ in range(20):  # warm-up (statement caches)
        svc.matcher.match(session, reg.pilot_id, res)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        assert svc.matcher.match(session, reg.pilot_id, res) is not None
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return (
        f"snapshot refresh {1000 * statistics.median(refresh):.1f} ms (median of 5)",
        f"{n} matches: {1000 * cpu / n:.2f} ms CPU per match ({1000 * wall / n:.2f} ms wall)",
    )


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=None, help="waiting jobs (default 30k/100k)")
    p.add_argument(
        "--submit",
        type=int,
        default=100_000,
        help="jobs submitted through logic.jobs.submit_jobs; the rest are copies of them",
    )
    p.add_argument("--inprocess", type=int, default=500, help="in-process matches timed")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--floor",
        action="store_true",
        help="also measure the route refused before the matcher (HTTP, auth, body only)",
    )
    args = p.parse_args()
    n_jobs = args.jobs or (100_000 if args.full else 30_000)
    secs = C.duration(args)
    table = C.Table(f"match.py results ({n_jobs} jobs)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        C.add_users(prep, GROUPS, USERS)
        nq = populate(prep, n_jobs, args.submit)
        show_plans(prep, env.engine)
        inproc = args.inprocess + 20  # with the warm-up
        snap_line, cpu_line = in_process(prep, args.inprocess)
        print(f"# in-process: {snap_line}; {cpu_line}", flush=True)
        table.add(f"[{env.kind}] in-process: {snap_line}; {cpu_line}")
        with C.Server(env, prep, args.workers) as server:
            pilots = C.register_pilots(server, prep.pilot_token, 4, SITE)
            lua_pilots = (
                "{"
                + ", ".join(
                    f"{{id = {pid}, token = {C.lua_string(tok)}, "
                    f"body = {C.lua_string(json.dumps(resource('el9' if i % 2 else 'el8')))}}}"
                    for i, (pid, tok) in enumerate(pilots)
                )
                + "}"
            )
            ids_file = env.tmp / "matched_ids.txt"
            lua = LUA.format(
                pilots=lua_pilots,
                threads=args.threads,
                ids_file=C.lua_string(str(ids_file)),
                id_shift=0,
            )
            kw = {"connections": args.connections, "threads": args.threads, "tmp": env.tmp}
            warm = C.run_wrk(server, lua, seconds=2, **kw)
            results = []
            with C.Profiler(server, args.profile, "match"):
                for i in range(args.runs):
                    r = C.run_wrk(server, lua, seconds=secs, **kw)
                    print(C.wrk_line(f"  run {i}", r, unit="match/s"), flush=True)
                    results.append(r)
            m = C.median_wrk(results)
            if args.floor:
                # The same requests to another pilot's URL: refused (403) by the route before
                # the matcher runs. What HTTP, auth and the body cost on this route.
                floor_lua = LUA.format(
                    pilots=lua_pilots,
                    threads=args.threads,
                    ids_file=C.lua_string(str(env.tmp / "floor_ids.txt")),
                    id_shift=10_000_000,
                )
                f = C.run_wrk(server, floor_lua, seconds=secs, **kw)
                table.add(
                    f"[{env.kind}, {args.workers} worker(s)] HTTP floor of the route (403 "
                    f"before the matcher): {f.rate:,.0f} req/s, server CPU "
                    f"{1000 * f.server_cpu / max(f.count(403), 1):.2f} ms per request"
                )
            table.add(
                f"[{env.kind}, {args.workers} worker(s)] match, {nq} queues, wrk "
                f"-t{args.threads} -c{args.connections}, {len(results)}x{secs:.0f}s: "
                f"{m.rate_of(200):,.0f} matches/s (median run; {m.rate:,.0f} req/s, "
                f"p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms; server CPU "
                f"{m.server_cpu / m.seconds:.2f} cores, "
                f"{1000 * m.server_cpu / max(m.count(200), 1):.2f} ms per match) "
                f"(target >= 1,000)"
            )
            ok = sum(r.count(200) for r in [warm, *results])
            bad = {
                k: v
                for r in [warm, *results]
                for k, v in r.statuses.items()
                if k not in ("200", "204")
            }
            seen = [int(x) for x in ids_file.read_text().split()]
            # wrk abandons the requests in flight when a run ends: the server still matches
            # them, so up to `connections` jobs per run are Matched without a 200 seen.
            in_flight = (len(results) + 1) * args.connections
        from sqlalchemy import func, select

        from ctaprod.db.tables import job_history, jobs

        with prep.services.ctx.db.read() as conn:
            matched = conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.status == "Matched")
            ).scalar_one()
            hist = conn.execute(
                select(func.count())
                .select_from(job_history)
                .where(job_history.c.status == "Matched")
            ).scalar_one()
            dup = conn.execute(
                select(func.count()).select_from(
                    select(job_history.c.job_id)
                    .where(job_history.c.status == "Matched")
                    .group_by(job_history.c.job_id)
                    .having(func.count() > 1)
                    .subquery()
                )
            ).scalar_one()
            seen_matched = conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.status == "Matched", jobs.c.job_id.in_(seen[:50_000]))
            ).scalar_one()
        good = (
            len(seen) == ok == len(set(seen))
            and seen_matched == min(ok, 50_000)
            and matched == hist
            and 0 <= matched - ok - inproc <= in_flight
            and dup == 0
            and not bad
        )
        table.add(
            f"  check: {ok} responses 200 with {len(set(seen))} distinct job IDs "
            f"(all Matched in the DB: {seen_matched == min(ok, 50_000)}); {matched} jobs "
            f"Matched, {hist} Matched history rows, {dup} jobs matched twice, "
            f"{inproc} matched in-process, {matched - ok - inproc} matched by requests cut off "
            f"at the end of the wrk runs "
            f"(<= {in_flight} allowed), other statuses {bad}: "
            f"{'OK' if good else 'MISMATCH'}"
        )
        prep.services.ctx.db.dispose()
    table.show()


if __name__ == "__main__":
    main()
