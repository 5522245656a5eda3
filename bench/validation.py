"""Production validation at scale: one MCSimulation step of N runs, every output (a small
file) on the local POSIX SE and in the catalog, validated with ``--checksum sample``.

1. Setup (not measured): a started MCSimulation transformation with ``max_tasks`` N (CTA
   layout: ``<base>/<trans>/<run // 1000>xxx/run<NNNNNN>.zst``, 1,000 files per directory),
   its N tasks made and submitted by the real ``logic.trans_work`` turns; then, as a
   shortcut for N pilots, the jobs and tasks are set Done in bulk (one UPDATE each), the
   outputs are written straight into the SE's directory and registered in batches of 5,000
   through ``logic.registration`` (``runNumber`` per file, the rest on the directory).
2. Measured: ``logic.prod_validation.validate`` in a fresh child process (so that its peak
   RSS is the validation's, not the setup's): wall time, outputs per second, RSS before and
   peak RSS (``resource.getrusage``), then a second run under ``tracemalloc`` for the peak
   of the Python heap (on SQLite the RSS also holds the page cache, ``cache_size`` 64 MiB
   per connection, which any large read fills), for each size given (default 10,000 and
   100,000) to show that memory stays flat.
3. Checks: the report is valid, every output expected and produced, the sample read.

    .venv/bin/python bench/validation.py [--db sqlite|mysql|postgresql|URL]
        [--sizes 10000,100000] [--checksum sample|full|none] [--sample 100]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

BASE = "/ctao/MC/Bench"
SE = "LOCAL-DISK"
BATCH = 5_000


def definition(runs: int) -> dict[str, Any]:
    return {
        "name": f"mc{runs}",
        "type": "MCSimulation",
        "max_tasks": runs,
        "run_number_start": 1,
        "job_template": {"Executable": "sim.sh", "Arguments": "--run {{run_number}}"},
        "output_lfn_template": (
            f"{BASE}/{{{{transformation_id}}}}/{{{{run_number // 1000 : 3}}}}xxx/"
            "run{{run_number:6}}.zst"
        ),
        "output_metadata": {"MCCampaign": "Bench", "data_level": -1, "runNumber": "{{run_number}}"},
    }


def populate(prep: C.Prepared, runs: int) -> int:
    from sqlalchemy import update

    from ctaprod.core.catalog import FileRegistration
    from ctaprod.core.identity import Identity
    from ctaprod.core.metadata import FieldDeclaration
    from ctaprod.core.properties import TokenKind
    from ctaprod.db.tables import jobs, trans_tasks
    from ctaprod.logic import metadata as M
    from ctaprod.logic import trans_work as W
    from ctaprod.logic import transformations as T
    from ctaprod.logic.registration import register_files

    ctx = prep.services.ctx
    admin = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
    for name, ftype in (("MCCampaign", "string"), ("data_level", "int"), ("runNumber", "int")):
        M.add_field(ctx, admin, FieldDeclaration(name=name, type=ftype))
    t0 = time.perf_counter()
    tid = T.create(ctx, admin, definition(runs), start=True).trans_id
    while W.make_tasks_of(ctx, tid):
        pass
    while W.submit_tasks(ctx, limit=5_000):
        pass
    now = ctx.clock()
    with ctx.db.write() as conn:  # N pilots' work, in two statements
        conn.execute(
            update(jobs)
            .where(jobs.c.job_group == f"{tid:08d}")
            .values(status="Done", minor_status="Execution Complete", end_time=now)
        )
        conn.execute(
            update(trans_tasks)
            .where(trans_tasks.c.trans_id == tid)
            .values(status="Done", ended=now, last_update=now)
        )
    print(f"# setup: {runs:,} tasks made, submitted, Done in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    root = Path(ctx.storage(SE).base_path)
    for start in range(1, runs + 1, BATCH):
        regs = []
        for run in range(start, min(runs, start + BATCH - 1) + 1):
            lfn = f"{BASE}/{tid}/{run // 1000:03d}xxx/run{run:06d}.zst"
            data = f"run {run} ".encode() * 8
            path = root / lfn.lstrip("/")
            if run % 1000 in (0, 1) or run == start:
                path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
            regs.append(
                FileRegistration(
                    lfn=lfn, size=len(data), checksum=checksum, se=SE,
                    metadata={"runNumber": run},
                )
            )  # fmt: skip
        register_files(ctx, admin, regs, verify=False)
    M.set_metadata(ctx, admin, f"{BASE}/{tid}", {"MCCampaign": "Bench", "data_level": -1})
    print(f"# setup: {runs:,} outputs written and registered in {time.perf_counter() - t0:.1f} s")
    return tid


def child(args: Any) -> None:
    """Validate in this fresh process; print one JSON line with the figures."""
    import resource
    import tracemalloc

    from ctaprod.core.settings import Settings
    from ctaprod.logic.prod_validation import validate
    from ctaprod.server.services import build_services

    settings = Settings(
        database_url=args.url, state_dir=Path(args.state), secret_key="bench-" + "x" * 48
    )
    services = build_services(settings, migrate_db=False)
    before = _rss_kib()
    phases: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        name = phase.split(": ")[-1] if phase.startswith("step") else "storage listing"
        phases[name] = time.perf_counter() - t0

    report = validate(
        services.ctx, [args.trans_id], checksum=args.checksum, sample=args.sample,
        progress=progress,
    )  # fmt: skip
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Again under tracemalloc: the Python heap's peak (RSS also holds SQLite's page cache,
    # up to 64 MiB per connection, filled by any large read whatever the validation keeps).
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    validate(services.ctx, [args.trans_id], checksum=args.checksum, sample=args.sample)
    heap = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    step = report.steps[0]
    print(
        json.dumps(
            {
                "seconds": secs,
                "rss_before_kib": before,
                "peak_kib": peak,
                "heap_peak_kib": heap // 1024,
                "valid": report.valid,
                "expected": step.expected_outputs,
                "produced": step.produced_outputs,
                "checked": step.checked_files,
                "listed": sum(c.storage_files for c in report.storage.checks),
                "phases": phases,
                "summary": report.summary()[:3],
            }
        )
    )


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--sizes", default="10000,100000", help="outputs per run, comma-separated")
    p.add_argument("--checksum", default="sample", choices=["sample", "full", "none"])
    p.add_argument("--sample", type=int, default=100)
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    p.add_argument("--url", help=argparse_hidden())
    p.add_argument("--state", help=argparse_hidden())
    p.add_argument("--trans-id", type=int, help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    table = C.Table(f"validation.py results (--checksum {args.checksum}, --sample {args.sample})")
    ok = True
    for size in sizes:
        with C.bench_env(args.db, args.keep) as env:
            prep = C.prepare(env)
            tid = populate(prep, size)
            prep.services.ctx.db.dispose()
            cmd = [
                sys.executable, __file__, "--child", "--url", env.url,
                "--state", str(env.tmp / "state"), "--trans-id", str(tid),
                "--checksum", args.checksum, "--sample", str(args.sample),
            ]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            good = res["valid"] and res["expected"] == res["produced"] == size
            ok = ok and good
            table.add(
                f"[{env.kind}] {size:,} outputs: validated in {res['seconds']:.1f} s = "
                f"{size / res['seconds']:,.0f} outputs/s; RSS {res['rss_before_kib'] / 1024:.0f} "
                f"MiB before, peak {res['peak_kib'] / 1024:.0f} MiB (+"
                f"{(res['peak_kib'] - res['rss_before_kib']) / 1024:.0f} MiB), Python heap peak "
                f"{res['heap_peak_kib'] / 1024:.1f} MiB (tracemalloc, second run); "
                f"{res['checked']} files read, {res['listed']:,} listed on the SE; "
                f"phases ended at {_phases(res['phases'])}; "
                f"{'valid' if good else 'CHECK FAILED: ' + ' | '.join(res['summary'])}"
            )
    table.show()
    if not ok:
        raise SystemExit(1)


def _phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
