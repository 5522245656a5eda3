"""Heartbeats and status updates from pilots: calls/s and items/s.

Setup: 8 pilots registered through the API (POST /api/pilots/register); Running jobs
(10,000 by default, 100,000 with ``--full``) assigned to them, inserted with the DB layer.

Measure, with ``wrk`` + Lua (``-t2 -c8`` by default), each request carrying the owning pilot's
session token and cycling over its jobs:

- POST /api/jobs/heartbeats with a single-item list (target >= 1,000 calls/s) and with
  100 items per call (target >= 5,000 items/s);
- POST /api/jobs/status with application_status updates (no status change), single-item and
  100 items per call.

Each figure is the median of ``--runs`` runs of ``--duration`` s after a 1 s warm-up. A
response whose body holds an item error is counted as ``item_error``.

    .venv/bin/python bench/heartbeat.py [--db sqlite|mysql|postgresql|URL] [--full]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

LUA = """
pilots = {pilots}
local batch = {batch}
local mine = {{}}
local counter = 0
function init(args)
  for i, p in ipairs(pilots) do
    if (i - 1) % {threads} == tid then table.insert(mine, p) end
  end
  if #mine == 0 then mine = pilots end
  for _, p in ipairs(mine) do p.next = 0 end
end
function on_response(status, body)
  if status == 200 and string.find(body, '"error":"', 1, true) then
    statuses["item_error"] = (statuses["item_error"] or 0) + 1
  end
end
function request()
  counter = counter + 1
  local p = mine[(counter % #mine) + 1]
  local items = {{}}
  for k = 1, batch do
    local id = p.first + p.next
    p.next = (p.next + 1) % p.count
    items[k] = string.format({item}, id, counter % 1000)
  end
  return wrk.format("POST", {path},
    {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. p.token}},
    "[" .. table.concat(items, ",") .. "]")
end
"""

HEARTBEAT = (
    '{"job_id": %d, "cpu_seconds": %d.5, "wall_seconds": 100.0, "rss_bytes": 1000000, '
    '"peak_rss_bytes": 2000000}'
)
STATUS = '{"job_id": %d, "application_status": "processing event block %d"}'


def populate(prep: C.Prepared, pilots: list[tuple[int, str]], n_jobs: int) -> list[int]:
    """Insert Running jobs assigned round-robin in contiguous blocks to the pilots."""
    ctx = prep.services.ctx
    now = ctx.clock()
    desc = '{"Executable": "/bin/true"}'
    per = n_jobs // len(pilots)
    firsts = []
    t0 = time.perf_counter()
    for pid, _ in pilots:
        ids: list[int] = []
        for k in range(0, per, 5000):
            rows = [
                {
                    "status": "Running",
                    "minor_status": "Application",
                    "application_status": "Start",
                    "owner": "admin",
                    "owner_group": "ctao_admin",
                    "job_name": f"hb{i}",
                    "job_group": "hb",
                    "job_type": "User",
                    "site": "BENCH.site.org",
                    "priority": 1,
                    "cpu_time": 3600,
                    "submission_time": now,
                    "last_update": now,
                    "heartbeat_time": now,
                    "start_time": now,
                    "reschedule_count": 0,
                    "pilot_id": pid,
                    "kill_requested": False,
                }
                for i in range(k, min(per, k + 5000))
            ]
            with ctx.db.write() as conn:
                ids += ctx.jobs.insert_jobs(conn, rows, [desc] * len(rows))
        assert ids == list(range(ids[0], ids[0] + per)), "job IDs not contiguous"
        firsts.append(ids[0])
    print(
        f"# setup: {per * len(pilots)} Running jobs for {len(pilots)} pilots in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return firsts


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=None, help="Running jobs (default 10k/100k)")
    p.add_argument("--pilots", type=int, default=8)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--only",
        default="",
        help="comma-separated subset of: heartbeat-1,heartbeat-100,status-1,status-100",
    )
    args = p.parse_args()
    n_jobs = args.jobs or (100_000 if args.full else 10_000)
    secs = C.duration(args)
    table = C.Table(f"heartbeat.py results ({n_jobs} Running jobs, {args.pilots} pilots)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        with C.Server(env, prep, args.workers) as server:
            pilots = C.register_pilots(server, prep.pilot_token, args.pilots)
            firsts = populate(prep, pilots, n_jobs)
            per = n_jobs // len(pilots)
            lua_pilots = (
                "{"
                + ", ".join(
                    f"{{token = {C.lua_string(tok)}, first = {first}, count = {per}}}"
                    for (_, tok), first in zip(pilots, firsts, strict=True)
                )
                + "}"
            )
            scenarios = [
                ("heartbeat-1", "/api/jobs/heartbeats", HEARTBEAT, 1, 1_000),
                ("heartbeat-100", "/api/jobs/heartbeats", HEARTBEAT, 100, 5_000),
                ("status-1", "/api/jobs/status", STATUS, 1, 1_000),
                ("status-100", "/api/jobs/status", STATUS, 100, 5_000),
            ]
            only = {s for s in args.only.split(",") if s}
            kw = {"connections": args.connections, "threads": args.threads, "tmp": env.tmp}
            for name, path, item, batch, target in scenarios:
                if only and name not in only:
                    continue
                lua = LUA.format(
                    pilots=lua_pilots,
                    batch=batch,
                    threads=args.threads,
                    item=C.lua_string(item),
                    path=C.lua_string(path),
                )
                C.run_wrk(server, lua, seconds=1, **kw)
                results = []
                with C.Profiler(server, args.profile, name):
                    for i in range(args.runs):
                        r = C.run_wrk(server, lua, seconds=secs, **kw)
                        print(
                            C.wrk_line(
                                f"  {name} run {i}", r, batch, "items/s" if batch > 1 else "calls/s"
                            ),
                            flush=True,
                        )
                        results.append(r)
                m = C.median_wrk(results)
                what = (
                    f"{m.rate_of(200):,.0f} calls/s"
                    if batch == 1
                    else f"{m.rate_of(200) * batch:,.0f} items/s ({m.rate_of(200):,.0f} calls/s)"
                )
                unit = "calls/s" if batch == 1 else "items/s"
                errs = {k: v for k, v in m.statuses.items() if k != "200"}
                table.add(
                    f"[{env.kind}, {args.workers} worker(s)] POST {path} x{batch} items, "
                    f"wrk -t{args.threads} -c{args.connections} "
                    f"{len(results)}x{secs:.0f}s: {what}, p50 {m.p50_ms:.1f} ms, "
                    f"p99 {m.p99_ms:.1f} ms, server CPU "
                    f"{m.server_cpu / m.seconds:.2f} cores"
                    + (f", NOT OK: {errs}" if errs or m.socket_errors else "")
                    + f" (target >= {target:,} {unit})"
                )
        from sqlalchemy import func, select

        from ctaprod.db.tables import jobs

        with prep.services.ctx.db.read() as conn:
            running = conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.status == "Running")
            ).scalar_one()
            updated = conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.application_status.like("processing event block%"))
            ).scalar_one()
        print(
            f"# check: {running} jobs still Running (expected {per * len(pilots)}), "
            f"{updated} with an application status set by the benchmark"
        )
        prep.services.ctx.db.dispose()
    table.show()


if __name__ == "__main__":
    main()
