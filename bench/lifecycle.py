"""Full job lifecycle with no-op payloads, end to end through the HTTP API: jobs/s.

Setup (logic layer, not measured): 4 users submit waiting jobs (20,000 by default, 100,000
with ``--full``) through ``logic.jobs.submit_jobs``, in 8 task queues (4 owners x 2 CPU
segments: big productions make few, large queues).

Measure: ``--procs`` pilot-like client processes (4 by default, 8 with ``--full``; each one
httpx connection with the token set per request), each registers a pilot, then loops for
``--duration`` seconds (20, 60 with ``--full``):

    match (pilot session token) -> status Running (job token) -> heartbeat (job token)
    -> status Done (job token)

Jobs/s = jobs taken to Done / wall time; per-step latencies are medians over all clients.
The clients share the 2 vCPUs with the server: their CPU use is printed.
Check: the Done jobs in the DB are those the clients finished, each Done once.

Target (issue): >= 100 jobs/s.

    .venv/bin/python bench/lifecycle.py [--db sqlite|mysql|postgresql|URL] [--full]
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

GROUPS = {"prod_a": 1.0, "prod_b": 1.0}
USERS = {"prod1": "prod_a", "prod2": "prod_a", "prod3": "prod_b", "prod4": "prod_b"}
SITE = "BENCH.site.org"


def populate(prep: C.Prepared, n: int) -> None:
    from ctaprod.core.jobs import JobDescription
    from ctaprod.logic.jobs import submit_jobs

    t0 = time.perf_counter()
    per = n // len(USERS)
    for user, group in USERS.items():
        descs = [
            JobDescription.model_validate(
                {
                    "Executable": "/bin/true",
                    "Arguments": f"run {i}",
                    "JobName": f"{user}_{i}",
                    "JobGroup": f"{user}_prod",
                    "CPUTime": 3600 if i % 2 else 40000,
                }
            )
            for i in range(per)
        ]
        for k in range(0, per, 5000):
            submit_jobs(prep.services.ctx, C.user_identity(user, group), descs[k : k + 5000])
    print(
        f"# setup: {per * len(USERS)} waiting jobs in {2 * len(USERS)} task queues in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )


def pilot(
    url: str, pilot_token: str, index: int, seconds: float, start: mp.Event, out: mp.Queue
) -> None:
    """One pilot-like client: one httpx connection, the token set per request (creating a
    ctaprod Client per token costs ~17 ms of CPU for its SSL context: see the README)."""
    import json

    import httpx

    body = json.dumps({"site": SITE, "ce": "bench-ce", "queue": "bench", "cpu_time_left": 86400})
    steps: dict[str, list[float]] = {"match": [], "running": [], "heartbeat": [], "done": []}
    done: list[int] = []
    empty = 0
    json_headers = {"Content-Type": "application/json"}

    def auth(token: str) -> dict[str, str]:
        return {**json_headers, "Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=url, timeout=60, verify=False) as http:
        r = http.post(
            "/api/pilots/register",
            headers=auth(pilot_token),
            json={
                "stamp": f"life-{index}-{time.time_ns()}",
                "site": SITE,
                "ce": "bench-ce",
                "queue": "bench",
            },
        )
        r.raise_for_status()
        pilot_id, session = r.json()["pilot_id"], auth(r.json()["session_token"])
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = http.post(f"/api/pilots/{pilot_id}/match", headers=session, content=body)
            t1 = time.perf_counter()
            steps["match"].append(t1 - t0)
            if r.status_code == 204:
                empty += 1
                time.sleep(0.05)
                continue
            r.raise_for_status()
            m = r.json()
            job_id, job = m["job_id"], auth(m["job_token"])
            http.post(
                f"/api/jobs/{job_id}/status",
                headers=job,
                content=json.dumps(
                    {"job_id": job_id, "status": "Running", "minor_status": "Application"}
                ),
            ).raise_for_status()
            t2 = time.perf_counter()
            http.post(
                f"/api/jobs/{job_id}/heartbeat",
                headers=job,
                content=json.dumps({"job_id": job_id, "cpu_seconds": 0.1, "wall_seconds": 0.1}),
            ).raise_for_status()
            t3 = time.perf_counter()
            http.post(
                f"/api/jobs/{job_id}/status",
                headers=job,
                content=json.dumps(
                    {
                        "job_id": job_id,
                        "status": "Done",
                        "minor_status": "Execution Complete",
                        "exit_code": 0,
                    }
                ),
            ).raise_for_status()
            t4 = time.perf_counter()
            steps["running"].append(t2 - t1)
            steps["heartbeat"].append(t3 - t2)
            steps["done"].append(t4 - t3)
            done.append(job_id)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((done, steps, empty, usage.ru_utime + usage.ru_stime))


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=None, help="waiting jobs (20k / 100k)")
    p.add_argument("--procs", type=int, default=None, help="pilot processes (4 / 8)")
    args = p.parse_args()
    n = args.jobs or (100_000 if args.full else 20_000)
    procs_n = args.procs or (8 if args.full else 4)
    secs = float(args.duration or (60 if args.full else 20))
    table = C.Table(f"lifecycle.py results ({n} waiting jobs, {procs_n} pilot processes)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        C.add_users(prep, GROUPS, USERS)
        populate(prep, n)
        with C.Server(env, prep, args.workers) as server:
            ctx = mp.get_context("fork")
            start, out = ctx.Event(), ctx.Queue()
            procs = [
                ctx.Process(target=pilot, args=(server.url, prep.pilot_token, i, secs, start, out))
                for i in range(procs_n)
            ]
            for pr in procs:
                pr.start()
            time.sleep(2.0)
            cpu0 = server.cpu_seconds()
            with C.Profiler(server, args.profile, "lifecycle"):
                t0 = time.perf_counter()
                start.set()
                results = [out.get(timeout=secs + 300) for _ in procs]
                wall = time.perf_counter() - t0
            cpu = server.cpu_seconds() - cpu0
            for pr in procs:
                pr.join()
        done = [j for r in results for j in r[0]]
        steps = {k: [x for r in results for x in r[1][k]] for k in results[0][1]}
        empty = sum(r[2] for r in results)
        client_cpu = sum(r[3] for r in results)
        lat = ", ".join(f"{k} {1000 * C.med(v):.1f}" for k, v in steps.items())
        table.add(
            f"[{env.kind}, {args.workers} worker(s)] {procs_n} pilot processes "
            f"(httpx client), match->Running->heartbeat->Done: {len(done)} jobs in "
            f"{wall:.1f} s = {len(done) / wall:,.0f} jobs/s ({4 * len(done) / wall:,.0f} "
            f"calls/s); median ms per call: {lat}; empty matches {empty}; CPU: server "
            f"{cpu / wall:.2f} cores, clients {client_cpu / wall:.2f} cores "
            f"(target >= 100 jobs/s)"
        )
        from sqlalchemy import func, select

        from ctaprod.db.tables import job_history, jobs

        with prep.services.ctx.db.read() as conn:
            n_done = conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.status == "Done")
            ).scalar_one()
            n_hist = conn.execute(
                select(func.count()).select_from(job_history).where(job_history.c.status == "Done")
            ).scalar_one()
            stuck = conn.execute(
                select(jobs.c.status, func.count())
                .where(jobs.c.status.in_(["Matched", "Running"]))
                .group_by(jobs.c.status)
            ).all()
        good = n_done == len(done) == len(set(done)) == n_hist
        table.add(
            f"  check: {len(done)} jobs finished by the clients ({len(set(done))} "
            f"distinct), {n_done} Done in the DB, {n_hist} Done history rows, left "
            f"Matched/Running: {dict(stuck)}: {'OK' if good else 'MISMATCH'}"
        )
        prep.services.ctx.db.dispose()
    table.show()


if __name__ == "__main__":
    main()
