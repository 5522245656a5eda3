"""An MCSimulation transformation run to the end with no-op payloads: the time ctaprod spends
per task beyond the payload (issue 8).

Starts ``ctaprod up --slots N`` (API server, every agent, the Local CE running pilots as local
processes) on a fresh database, with the transformation agents and the pilot factory every
second; creates a started MCSimulation transformation of ``--tasks`` (10,000) tasks whose job
writes one small output (``echo run N > name``), which the job uploads to the local SE and
registers with its run number; waits until it is Completed. Prints: wall time and
tasks/s end to end, and per task (medians, from the task and job timestamps and the job
history): task made -> job submitted, job Waiting -> Matched (queue wait: bounded by the
slots), Matched -> Running (the pilot starting the job: wrapper, sandbox), Running -> Done
(payload and the wrapper's end: status, output upload and registration), job Done -> task
Done. The payload itself takes a few milliseconds, so Matched -> Done is ctaprod's time per
task in a slot.

    .venv/bin/python bench/mc_run.py [--db sqlite|mysql|postgresql|URL] [--tasks N] [--slots N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--slots", type=int, default=4)
    args = p.parse_args()
    table = C.Table(f"mc_run.py results ({args.tasks:,} tasks, {args.slots} slots)")
    with C.bench_env(args.db, args.keep) as env:
        port = C.free_port()
        fast = {
            f"CTAPROD_AGENTS__{a}__INTERVAL": "1"
            for a in (
                "TASK_CREATION",
                "TASK_SUBMISSION",
                "TRANSFORMATION_RECOVERY",
                "PILOT_FACTORY",
            )
        }
        up_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CTAPROD_")},
            **fast,
            "CTAPROD_STATE_DIR": str(env.tmp / "state"),
            "CTAPROD_PORT": str(port),
            "CTAPROD_CONFIG_DIR": str(env.tmp / "client"),
        }
        if env.engine != "sqlite":
            up_env["CTAPROD_DATABASE_URL"] = env.url
        log = (env.tmp / "up.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", str(args.slots)],
            env=up_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, (env.tmp / "up.log").read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.2)
            from ctaprod.client.http import Client

            token = (env.tmp / "client" / "token").read_text().strip()
            client = Client(url, token, timeout=120)
            t0 = time.perf_counter()
            view = client.create_transformation(
                {
                    "name": "mc_bench",
                    "type": "MCSimulation",
                    "max_tasks": args.tasks,
                    "job_template": {
                        "Executable": "/bin/sh",
                        "Arguments": "-c 'echo run {{run_number}} > {{output_name}}'",
                        "CPUTime": 100,
                    },
                    "output_lfn_template": "/ctao/MC/bench/{{transformation_id}}/run{{run_number}}",
                },
                start=True,
            )
            last = -1
            while True:
                view = client.transformation(view.trans_id)
                done = sum(view.tasks.get(s, 0) for s in ("Done", "Failed", "Killed"))
                if view.status == "Completed":
                    break
                if done // 500 != last // 500:
                    print(
                        f"# {done:,} tasks ended after {time.perf_counter() - t0:.0f} s", flush=True
                    )
                    last = done
                time.sleep(1)
            wall = time.perf_counter() - t0
            counts = dict(view.tasks)
            client.close()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        # Timestamps from the database.
        from sqlalchemy import create_engine, select

        from ctaprod.db.tables import job_history, trans_tasks

        url_db = (
            env.url if env.engine != "sqlite" else f"sqlite:///{env.tmp / 'state' / 'ctaprod.db'}"
        )
        engine = create_engine(url_db)
        with engine.connect() as conn:
            tasks = conn.execute(
                select(
                    trans_tasks.c.job_id,
                    trans_tasks.c.created,
                    trans_tasks.c.submitted,
                    trans_tasks.c.ended,
                )
            ).all()
            hist: dict[int, dict[str, Any]] = defaultdict(dict)
            for job_id, status, when in conn.execute(
                select(job_history.c.job_id, job_history.c.status, job_history.c.time).order_by(
                    job_history.c.id
                )
            ):
                hist[int(job_id)].setdefault(status, when)
        engine.dispose()

        def span(a: Any, b: Any) -> float | None:
            return None if a is None or b is None else (b - a).total_seconds()

        parts: dict[str, list[float]] = defaultdict(list)
        for job_id, created, submitted, ended in tasks:
            h = hist.get(int(job_id or 0), {})
            for name, value in (
                ("task made -> job submitted", span(created, submitted)),
                ("job Waiting -> Matched (queue)", span(h.get("Waiting"), h.get("Matched"))),
                ("Matched -> Running (job start)", span(h.get("Matched"), h.get("Running"))),
                ("Running -> Done (payload + end)", span(h.get("Running"), h.get("Done"))),
                ("job Done -> task Done", span(h.get("Done"), ended)),
                ("in a slot: Matched -> Done", span(h.get("Matched"), h.get("Done"))),
            ):
                if value is not None:
                    parts[name].append(value)
        table.add(
            f"[{env.kind}] {args.tasks:,} MCSimulation tasks (no-op payload) to Completed in "
            f"{wall:.0f} s = {args.tasks / wall:.1f} tasks/s with {args.slots} slots; "
            f"tasks {counts}"
        )
        for name, values in parts.items():
            table.add(f"  {name}: median {C.med(values):.3f} s, p99 {C.pct(values, 99):.3f} s")
        slot = C.med(parts["in a slot: Matched -> Done"])
        table.add(
            f"  ctaprod's time per task in a slot (beyond the payload's ms): {slot:.2f} s; "
            f"per task of wall time: {wall / args.tasks * 1000:.0f} ms"
        )
    table.show()


if __name__ == "__main__":
    main()
