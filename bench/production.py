"""A 3-step CTA production run to the end with no-op stand-in payloads (issue 9): total wall
time, jobs per second, the time ctaprod spends per job, the trigger latency between steps,
and what bounds the run.

Starts ``ctaprod up --slots N`` (API server and every agent in one process, the Local CE
running pilots as local processes) on a fresh database, the transformation, production and
pilot-factory agents every second; submits CTADIRAC's ``full_production_config.yml`` without
its 4th step (MCSimulation -> CtapipeProcessing, one job per MC output -> Merging by 5) with
``--tasks`` MC tasks, the CTA software replaced by the stand-ins (``CTAPROD_CTA_SOFTWARE=
standin``, duration 0: each payload is the launcher and the stand-in program, two Python
start-ups writing a 4 KiB file); starts it and waits until it is Completed, then validates it
(``--checksum``, default full).

Prints:

- wall time, jobs and jobs/s; when each step completed;
- per job (job history and the payload's wall time the pilot reports): queue wait (Waiting
  -> Matched), Matched -> Running, Running -> Done, and ctaprod's time in a slot = Matched ->
  Done minus the payload's wall time (wrapper, status reports, output upload and
  registration), median and p99, per step;
- trigger latency across steps: a task's last input registered -> the task created (a
  processing task has one input, a merge task 5); a smaller last merge group waits for the
  input to be declared complete (the processing step Completed): shown apart;
- CPU (psutil, sampled every second): the ``ctaprod up`` process (server and agents: one
  Python process, one core at most for Python), its descendants (pilots, wrappers, payloads;
  reaped ones counted through the kernel's children times), the database server for MariaDB
  and PostgreSQL, and the whole machine: what bounds the run.

    .venv/bin/python bench/production.py [--db sqlite|mysql|postgresql|URL] [--tasks N]
        [--slots N] [--checksum full|sample|none]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

FIXTURE = C.ROOT / "tests" / "fixtures" / "ctadirac" / "workflows" / "full_production_config.yml"
NAME = "bench_prod"
DB_PROCESSES = ("mariadbd", "mysqld", "postgres")


def definition() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(FIXTURE.read_text())
    raw["ProdSteps"] = raw["ProdSteps"][:3]  # MC -> processing -> merging
    return raw


@dataclass
class Cpu:
    """CPU seconds used since the start, sampled every second."""

    up: psutil.Process
    engine: str
    t0: float = field(default_factory=time.perf_counter)
    start: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    peak: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _prev: tuple[float, dict[str, float]] | None = None

    def read(self) -> dict[str, float]:
        t = self.up.cpu_times()
        # Each CPU second once: in a live process's own times, or in the children times of
        # its nearest live ancestor once reaped (``up`` reaps the pilots, the pilots their
        # payloads).
        live = 0.0
        for p in self.up.children(recursive=True):
            try:
                c = p.cpu_times()
                live += c.user + c.system + c.children_user + c.children_system
            except psutil.Error:
                pass
        db = 0.0
        if self.engine != "sqlite":
            for p in psutil.process_iter(["name"]):
                if p.info["name"] in DB_PROCESSES:
                    try:
                        c = p.cpu_times()
                        db += c.user + c.system
                    except psutil.Error:
                        pass
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return {
            "server and agents": t.user + t.system,
            "pilots and payloads": t.children_user + t.children_system + live,
            "database server": db,
            "machine": busy,
        }

    def sample(self) -> None:
        now, values = time.perf_counter(), self.read()
        if not self.start:
            self.start = values
        if self._prev is not None:
            dt = now - self._prev[0]
            for k, v in values.items():
                self.peak[k] = max(self.peak[k], (v - self._prev[1][k]) / dt)
        self._prev = (now, values)
        self.last = values

    def cores(self, seconds: float) -> dict[str, float]:
        return {k: (self.last[k] - self.start[k]) / seconds for k in self.last}


def start_up(env: C.BenchEnv, slots: int) -> tuple[subprocess.Popen[bytes], str, Any]:
    port = C.free_port()
    fast = {
        f"CTAPROD_AGENTS__{a}__INTERVAL": "1"
        for a in (
            "TASK_CREATION",
            "TASK_SUBMISSION",
            "TRANSFORMATION_RECOVERY",
            "PILOT_FACTORY",
            "PRODUCTION",
        )
    }
    up_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CTAPROD_")},
        **fast,
        "CTAPROD_CTA_SOFTWARE": "standin",
        "CTAPROD_STATE_DIR": str(env.tmp / "state"),
        "CTAPROD_PORT": str(port),
        "CTAPROD_CONFIG_DIR": str(env.tmp / "client"),
    }
    if env.engine != "sqlite":
        up_env["CTAPROD_DATABASE_URL"] = env.url
    log = (env.tmp / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", str(slots)],
        env=up_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, (env.tmp / "up.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "ctaprod up did not start"
        time.sleep(0.2)


def timestamps(env: C.BenchEnv, trans_ids: list[int]) -> dict[str, Any]:
    """Tasks, job history, payload times and inputs' registration times, from the DB."""
    from sqlalchemy import create_engine, func, select

    from ctaprod.db.tables import catalog_files, job_history, jobs, trans_task_files, trans_tasks

    url = env.url if env.engine != "sqlite" else f"sqlite:///{env.tmp / 'state' / 'ctaprod.db'}"
    engine = create_engine(url)
    with engine.connect() as conn:
        tasks = conn.execute(
            select(
                trans_tasks.c.trans_id,
                trans_tasks.c.task_id,
                trans_tasks.c.job_id,
                trans_tasks.c.created,
            ).where(trans_tasks.c.trans_id.in_(trans_ids))
        ).all()
        hist: dict[int, dict[str, Any]] = defaultdict(dict)
        for job_id, status, when in conn.execute(
            select(job_history.c.job_id, job_history.c.status, job_history.c.time).order_by(
                job_history.c.id
            )
        ):
            hist[int(job_id)].setdefault(status, when)
        wall = {
            int(j): w
            for j, w in conn.execute(select(jobs.c.job_id, jobs.c.wall_seconds))
            if w is not None
        }
        # Per task: when its inputs were registered (first and last).
        inputs = {
            int(task_id): (first, last, n)
            for task_id, first, last, n in conn.execute(
                select(
                    trans_task_files.c.task_id,
                    func.min(catalog_files.c.created),
                    func.max(catalog_files.c.created),
                    func.count(),
                )
                .join(catalog_files, catalog_files.c.file_id == trans_task_files.c.file_id)
                .group_by(trans_task_files.c.task_id)
            )
        }
    engine.dispose()
    return {"tasks": tasks, "hist": hist, "wall": wall, "inputs": inputs}


def span(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--tasks", type=int, default=1_000, help="MC tasks")
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--checksum", default="full", choices=("full", "sample", "none"))
    args = p.parse_args()
    table = C.Table(f"production.py results ({args.tasks:,} MC tasks, {args.slots} slots)")
    with C.bench_env(args.db, args.keep) as env:
        proc, url, log = start_up(env, args.slots)
        from ctaprod.client.http import Client

        token = (env.tmp / "client" / "token").read_text().strip()
        client = Client(url, token, timeout=600)
        cpu = Cpu(psutil.Process(proc.pid), env.engine)
        try:
            cpu.sample()
            t0 = time.perf_counter()
            view = client.submit_production(definition(), name=NAME, mc_tasks=args.tasks)
            client.drive_production(NAME, "start")
            submitted = time.perf_counter() - t0
            completed: dict[str, float] = {}
            last_print = 0.0
            while True:
                time.sleep(1)
                cpu.sample()
                view = client.production(NAME)
                now = time.perf_counter() - t0
                for s in view.steps:
                    if s.trans_status == "Completed" and s.step_id not in completed:
                        completed[s.step_id] = now
                if view.status == "Completed":
                    break
                if now - last_print >= 30:
                    last_print = now
                    done = [s.tasks.get("Done", 0) for s in view.steps]
                    print(f"# {now:.0f} s: Done tasks per step {done}", flush=True)
            wall = time.perf_counter() - t0
            cpu_cores = cpu.cores(wall)
            steps = view.steps
            client_defs = {s.trans_id: client.transformation(s.trans_id).definition for s in steps}
            t1 = time.perf_counter()
            outcome = client.validate_production(NAME, checksum=args.checksum)
            validate_s = time.perf_counter() - t1
            client.close()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            for child in psutil.Process().children(recursive=True):
                try:
                    if str(env.tmp) in " ".join(child.cmdline()):
                        child.kill()
                except psutil.Error:
                    pass

        kinds = ("MCSimulation", "CtapipeProcessing", "Merging")
        names = {
            s.trans_id: f"step {s.step_id} ({kind})" for s, kind in zip(steps, kinds, strict=True)
        }
        data = timestamps(env, [s.trans_id for s in steps])
        jobs_done = sum(s.tasks.get("Done", 0) for s in steps)
        table.add(
            f"[{env.kind}] {args.tasks:,} MC tasks -> Completed in {wall:.0f} s "
            f"(submit + start {submitted:.1f} s): {jobs_done:,} jobs Done = "
            f"{jobs_done / wall:.2f} jobs/s with {args.slots} slots; tasks per step "
            + "; ".join(f"{s.step_id}: {s.tasks}" for s in steps)
        )
        table.add(
            "  steps completed at "
            + ", ".join(f"step {k} {v:.0f} s" for k, v in sorted(completed.items()))
        )
        group_size = {
            s.trans_id: int(client_defs[s.trans_id].get("group_size") or 1) for s in steps
        }
        per_step: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for trans_id, task_id, job_id, created in data["tasks"]:
            h = data["hist"].get(int(job_id or 0), {})
            parts = per_step[int(trans_id)]
            for label, value in (
                ("Waiting -> Matched (queue)", span(h.get("Waiting"), h.get("Matched"))),
                ("Matched -> Running", span(h.get("Matched"), h.get("Running"))),
                ("Running -> Done", span(h.get("Running"), h.get("Done"))),
            ):
                if value is not None:
                    parts[label].append(value)
            in_slot = span(h.get("Matched"), h.get("Done"))
            payload = data["wall"].get(int(job_id or 0))
            if in_slot is not None and payload is not None:
                parts["payload (wall, pilot's report)"].append(payload)
                parts["ctaprod in a slot (Matched -> Done - payload)"].append(in_slot - payload)
            got = data["inputs"].get(int(task_id))
            if got is not None:
                latency = span(got[1], created) or 0.0
                if got[2] < group_size.get(int(trans_id), 1):
                    # A smaller group: made once the input was declared complete.
                    parts["last input registered -> smaller last group created"].append(latency)
                else:
                    parts["last input registered -> task created"].append(latency)
        all_ctaprod: list[float] = []
        for trans_id, parts in per_step.items():
            table.add(f"  {names[trans_id]}:")
            for label, values in parts.items():
                table.add(
                    f"    {label}: median {C.med(values):.3f} s, p99 {C.pct(values, 99):.3f} s "
                    f"({len(values):,})"
                )
            all_ctaprod += parts["ctaprod in a slot (Matched -> Done - payload)"]
        table.add(
            f"  ctaprod's time per job in a slot (beyond the payload): median "
            f"{C.med(all_ctaprod):.3f} s, p99 {C.pct(all_ctaprod, 99):.3f} s; per job of wall "
            f"time {wall / max(jobs_done, 1) * 1000:.0f} ms"
        )
        ncpu = psutil.cpu_count() or 1
        table.add(
            "  CPU, average cores over the run (peak over 1 s): "
            + "; ".join(f"{k} {v:.2f} ({cpu.peak[k]:.2f})" for k, v in cpu_cores.items())
            + f" of {ncpu}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
        table.add(
            f"  validation ({args.checksum} checksums): {outcome.validation_status} in "
            f"{validate_s:.1f} s"
        )
        assert view.status == "Completed", view
        assert outcome.validation_status == "Valid", outcome.summary
    table.show()


if __name__ == "__main__":
    main()
