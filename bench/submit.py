"""Bulk submission through the API: jobs per second accepted by POST /api/jobs.

1. One parametric JDL (``Parameters = N``, N = 2,000 by default, 10,000 with ``--full``) in
   one call, timed with httpx (one request: the client costs nothing here); median of
   ``--runs`` submissions.
2. Batches of 100 jobs (parametric, ``Parameters = 100``) from ``--procs`` client processes
   (httpx, one process per client) submitting concurrently; jobs/s over the whole run.

Target (issue): >= 2,000 jobs/s (DiracX 0.7: ~1,000-1,400 jobs/s).

    .venv/bin/python bench/submit.py [--db sqlite|mysql|postgresql|URL] [--full] [--workers N]
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

JDL = """[
  Executable = "/bin/echo";
  Arguments = "event file %s";
  JobName = "bench_%n";
  JobGroup = "submit_bench_{tag}";
  CPUTime = 3600;
  OutputSandbox = {{"std.out", "std.err"}};
  Parameters = {n};
  ParameterStart = 1;
  ParameterStep = 1;
]"""


def submit_one(url: str, token: str, n: int, tag: str) -> tuple[float, int]:
    import httpx

    with httpx.Client(base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}) as c:
        t0 = time.perf_counter()
        r = c.post("/api/jobs", json={"text": JDL.format(n=n, tag=tag), "format": "jdl"})
        dt = time.perf_counter() - t0
    r.raise_for_status()
    return dt, len(r.json()["job_ids"])


def batch_client(
    url: str, token: str, batches: int, size: int, start: mp.Event, out: mp.Queue
) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}) as c:
        c.get("/api/auth/whoami").raise_for_status()
        start.wait()
        latencies, n = [], 0
        for b in range(batches):
            t0 = time.perf_counter()
            r = c.post("/api/jobs", json={"text": JDL.format(n=size, tag=f"b{b}"), "format": "jdl"})
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            n += len(r.json()["job_ids"])
        out.put((n, latencies))


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=None, help="jobs in the parametric submit")
    p.add_argument("--procs", type=int, default=4, help="client processes for batches")
    p.add_argument("--batches", type=int, default=None, help="batches of 100 per process")
    args = p.parse_args()
    n = args.jobs or (10_000 if args.full else 2_000)
    batches = args.batches or (25 if args.full else 10)
    table = C.Table(f"submit.py results (n={n}, {args.procs} procs x {batches} x 100)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        with C.Server(env, prep, args.workers) as server:
            submit_one(server.url, prep.admin_token, 10, "warmup")
            times = []
            with C.Profiler(server, args.profile, "parametric submit"):
                for i in range(args.runs):
                    cpu0 = server.cpu_seconds()
                    dt, got = submit_one(server.url, prep.admin_token, n, f"run{i}")
                    cpu = server.cpu_seconds() - cpu0
                    assert got == n, (got, n)
                    times.append(dt)
                    print(
                        f"  parametric run {i}: {n} jobs in {dt:.2f} s = {n / dt:,.0f} "
                        f"jobs/s (server CPU {cpu:.2f} s)",
                        flush=True,
                    )
            t = C.med(times)
            table.add(
                f"[{env.kind}, {args.workers} worker(s)] one parametric submit of {n} "
                f"jobs (httpx, 1 request): median {t:.2f} s = {n / t:,.0f} jobs/s "
                f"(target >= 2,000)"
            )

            ctx = mp.get_context("fork")
            start, out = ctx.Event(), ctx.Queue()
            procs = [
                ctx.Process(
                    target=batch_client,
                    args=(server.url, prep.admin_token, batches, 100, start, out),
                )
                for _ in range(args.procs)
            ]
            for pr in procs:
                pr.start()
            time.sleep(1.0)
            cpu0 = server.cpu_seconds()
            with C.Profiler(server, args.profile, "batches of 100"):
                t0 = time.perf_counter()
                start.set()
                results = [out.get(timeout=900) for _ in procs]
                wall = time.perf_counter() - t0
            cpu = server.cpu_seconds() - cpu0
            for pr in procs:
                pr.join()
            total = sum(r[0] for r in results)
            lat = [x for r in results for x in r[1]]
            table.add(
                f"[{env.kind}, {args.workers} worker(s)] batches of 100 from "
                f"{args.procs} processes (httpx): {total} jobs in {wall:.2f} s = "
                f"{total / wall:,.0f} jobs/s; per call p50 {1000 * C.med(lat):.0f} ms, "
                f"p99 {1000 * C.pct(lat, 99):.0f} ms; server CPU "
                f"{cpu / wall:.2f} cores"
            )

        from sqlalchemy import func, select

        from ctaprod.db.tables import job_history, jobs, tq_jobs

        with prep.services.ctx.db.read() as conn:
            njobs = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
            nhist = conn.execute(select(func.count()).select_from(job_history)).scalar_one()
            nq = conn.execute(select(func.count()).select_from(tq_jobs)).scalar_one()
        expected = 10 + n * args.runs + total
        print(
            f"# check: {njobs} jobs in the DB (expected {expected}), {nhist} history rows, "
            f"{nq} queued"
        )
        assert njobs == expected == nq
        prep.services.ctx.db.dispose()
    table.show()


if __name__ == "__main__":
    main()
