"""Trigger latency: from a file's registering commit to Unused in every transformation whose
input query it matches (issue 8: median <= 0.5 s, p99 <= 2 s), and a directory metadata
change that brings many existing files into a query (all attached within 10 s).

1. Declares 8 metadata fields; registers ``--files`` files (1,000,000; ``--quick``: 100,000)
   in directories campaign/site/particle (directory metadata) with file metadata (zenith,
   azimuth, nsb, run, obs), in batches of 10,000 (not measured).
2. Creates ``--transformations`` (1,000) Processing transformations with random queries of
   3 to 6 conditions (mostly ``=``, some ``in`` and ``>=``) over those fields; 95 % wait for
   the new campaign (``campaign='Prod7'``), the others take old files too. They attach their
   existing matches at creation (timed, not the figure).
3. Starts the real agent process (``ctaprod agents --name transformation_trigger``, its
   shipped interval) and registers ``--new`` (10,000) new files in batches of ``--batch``
   (100) in the new campaign's directories from this process, recording when each batch's
   commit returned.
4. Waits until the trigger is idle; the latency of each (file, transformation) pair is the
   attachment time (``trans_files.last_update``, written in the consumer's transaction just
   before its commit) minus the batch's commit time. Median and p99 over all pairs.
5. Checks every new file against every query by brute force (``core.metaquery.matches`` on
   its effective metadata): no pair attached that does not match, none missing.
6. Directory change: sets a field on a directory holding ``--dir-files`` (100,000; quick:
   20,000) existing files that makes them match one new transformation's query; time until
   all are attached.

    .venv/bin/python bench/trigger.py [--db sqlite|mysql|postgresql|URL] [--quick]
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

BASE = "/ctao/MC/Trig"
FIELDS = {
    "campaign": ("string", ["Prod5", "Prod6"]),
    "site": ("string", ["North", "South"]),
    "particle": ("string", ["gamma", "proton", "electron", "gamma-diffuse"]),
    "zenith": ("int", [20, 40, 52, 60]),
    "azimuth": ("int", [0, 180]),
    "nsb": ("int", [1, 5, 19]),
    "array": ("string", ["alpha", "beta", "full"]),
    "obs": ("int", list(range(50))),
}
DIR_KEYS = ("campaign", "site", "particle")
OLD = ["Prod5", "Prod6"]


def file_meta(rng: random.Random) -> dict[str, Any]:
    return {k: rng.choice(FIELDS[k][1]) for k in ("zenith", "azimuth", "nsb", "array", "obs")}


def random_query(rng: random.Random) -> str:
    """3 to 6 conditions; most wait for the new campaign (Prod7), some take the old ones."""
    keys = rng.sample(sorted(k for k in FIELDS if k != "campaign"), rng.randint(2, 5))
    parts = ["campaign='Prod7'" if rng.random() < 0.95 else f"campaign={rng.choice(OLD)!r}"]
    for k in keys:
        kind, values = FIELDS[k]
        r = rng.random()
        if r < 0.75 or len(values) < 3:
            v = rng.choice(values)
            parts.append(f"{k}={v!r}" if kind == "string" else f"{k}={v}")
        elif r < 0.9:
            vs = rng.sample(values, 2)
            parts.append(f"{k} in ({','.join(map(str, vs))})")
        else:
            parts.append(f"{k}>={rng.choice(values)}" if kind == "int" else f"{k}={values[0]!r}")
    return " ".join(parts)


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--quick", action="store_true", help="100,000 files, 20,000 in the dir")
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--transformations", type=int, default=1000)
    p.add_argument("--new", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--dir-files", type=int, default=None)
    args = p.parse_args()
    n_files = args.files or (100_000 if args.quick else 1_000_000)
    n_dir = args.dir_files or (20_000 if args.quick else 100_000)
    table = C.Table(
        f"trigger.py results ({n_files:,} files, {args.transformations:,} transformations)"
    )
    rng = random.Random(42)
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        from sqlalchemy import select

        from ctaprod.core.catalog import FileRegistration
        from ctaprod.core.identity import Identity
        from ctaprod.core.metadata import FieldDeclaration
        from ctaprod.core.metaquery import matches, parse
        from ctaprod.core.properties import TokenKind
        from ctaprod.db.tables import trans_files
        from ctaprod.logic import metadata as M
        from ctaprod.logic import transformations as T
        from ctaprod.logic.registration import register_files

        ctx = prep.services.ctx
        admin = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
        for name, (kind, _) in FIELDS.items():
            M.add_field(ctx, admin, FieldDeclaration(name=name, type=kind))
        dirs: dict[str, dict[str, Any]] = {}
        new_dirs: dict[str, dict[str, Any]] = {}
        for s_ in FIELDS["site"][1]:
            for pt in FIELDS["particle"][1]:
                new_dirs[f"{BASE}/Prod7/{s_}/{pt}"] = {
                    "campaign": "Prod7",
                    "site": s_,
                    "particle": pt,
                }
        for c in FIELDS["campaign"][1]:
            for s in FIELDS["site"][1]:
                for pt in FIELDS["particle"][1]:
                    dirs[f"{BASE}/{c}/{s}/{pt}"] = {"campaign": c, "site": s, "particle": pt}

        def regs(
            start: int, n: int, where: str | None = None, new: bool = False
        ) -> list[FileRegistration]:
            out = []
            pool = sorted(new_dirs if new else dirs)
            for i in range(start, start + n):
                d = where or rng.choice(pool)
                out.append(
                    FileRegistration(
                        lfn=f"{d}/r{i // 10_000:03d}/f{i:08d}",
                        size=1,
                        checksum="1",
                        metadata=file_meta(rng),
                    )
                )
            return out

        t0 = time.perf_counter()
        for start in range(0, n_files, 10_000):
            register_files(ctx, admin, regs(start, min(10_000, n_files - start)), verify=False)
        for d, meta in {**dirs, **new_dirs}.items():
            if d in new_dirs:  # the new campaign's directories exist (empty) beforehand
                register_files(ctx, admin, regs(10**9 + len(d), 1, d), verify=False)
            M.set_metadata(ctx, admin, d, meta)
        print(f"# setup: {n_files:,} files in {time.perf_counter() - t0:.0f} s", flush=True)
        t0 = time.perf_counter()
        queries: dict[int, str] = {}
        for i in range(args.transformations):
            q = random_query(rng)
            view = T.create(
                ctx,
                admin,
                {
                    "name": f"t{i:04d}",
                    "type": "Processing",
                    "input_query": q,
                    "group_size": 10,
                    "job_template": {"Executable": "x.sh"},
                    "output_lfn_template": f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}",
                },
                start=False,
            )
            queries[view.trans_id] = q
        secs = time.perf_counter() - t0
        table.add(
            f"[{env.kind}] {args.transformations:,} transformations created (each attaching "
            f"its existing matches) in {secs:.0f} s"
        )
        agent_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CTAPROD_")},
            "CTAPROD_DATABASE_URL": env.url,
            "CTAPROD_STATE_DIR": str(env.tmp / "state"),
            "CTAPROD_SECRET_KEY": prep.secret,
        }
        log = (env.tmp / "agent.log").open("wb")
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ctaprod.cli.main",
                "agents",
                "--name",
                "transformation_trigger",
            ],
            env=agent_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(3)  # started, consumer registered, first idle polls
            committed: dict[int, datetime] = {}
            new_ids: list[int] = []
            t0 = time.perf_counter()
            start = n_files + 1
            for b in range(0, args.new, args.batch):
                ids = register_files(
                    ctx, admin, regs(start + b, args.batch, new=True), verify=False
                )
                now = datetime.now(UTC)
                committed.update(dict.fromkeys(ids, now))
                new_ids += ids
                time.sleep(0.01)
            reg_secs = time.perf_counter() - t0
            # Wait until the consumer is idle (its cursor at the end of the outbox).
            from ctaprod.logic import events as E

            deadline = time.monotonic() + 600
            while True:
                [state] = [c for c in E.consumers(ctx) if c.consumer == "transformations"]
                with ctx.db.read() as conn:
                    backlog = ctx.events.unsequenced(conn)
                if state.position >= state.last_seq and not backlog:
                    break
                assert time.monotonic() < deadline, "the trigger did not catch up"
                time.sleep(0.2)
            with ctx.db.read() as conn:
                rows = []
                for i in range(0, len(new_ids), 5000):
                    rows += conn.execute(
                        select(
                            trans_files.c.trans_id, trans_files.c.file_id, trans_files.c.last_update
                        ).where(trans_files.c.file_id.in_(new_ids[i : i + 5000]))
                    ).all()
                values = ctx.meta.effective_file_values(conn, new_ids, ctx.meta.field_types(conn))
            lat = [(r[2] - committed[r[1]]).total_seconds() for r in rows]
            got = {(int(r[0]), int(r[1])) for r in rows}
            parsed = {t: parse(q) for t, q in queries.items()}
            want = {
                (t, f) for f, meta in values.items() for t, q in parsed.items() if matches(q, meta)
            }
            wrong, missed = got - want, want - got
            table.add(
                f"[{env.kind}] {args.new:,} new files in batches of {args.batch} over "
                f"{reg_secs:.1f} s: {len(got):,} (file, transformation) attachments; latency "
                f"from the registering commit to Unused: median {C.med(lat):.3f} s, p99 "
                f"{C.pct(lat, 99):.3f} s, max {max(lat, default=0):.3f} s (target median <= "
                f"0.5 s, p99 <= 2 s)"
            )
            table.add(
                f"  check: attached but not matching {len(wrong)}, matching but not attached "
                f"{len(missed)}: {'OK' if not wrong and not missed else 'FAILED'}"
            )
            # Directory change: n_dir existing files brought into a new query at once.
            target = f"{BASE}/dirbench"
            for start2 in range(0, n_dir, 10_000):
                register_files(
                    ctx, admin, regs(10**8 + start2, min(10_000, n_dir - start2), target),
                    verify=False,
                )  # fmt: skip
            view = T.create(
                ctx,
                admin,
                {
                    "name": "dirbench",
                    "type": "Processing",
                    "input_query": "campaign='Prod9' site='Moon' particle='gamma'",
                    "group_size": 10,
                    "job_template": {"Executable": "x.sh"},
                    "output_lfn_template": f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}",
                },
            )
            time.sleep(1)
            t0 = time.perf_counter()
            M.set_metadata(
                ctx, admin, target, {"campaign": "Prod9", "site": "Moon", "particle": "gamma"}
            )
            deadline = time.monotonic() + 300
            while T.get(ctx, view.trans_id).files.get("Unused", 0) < n_dir:
                assert time.monotonic() < deadline, "the directory change was not applied"
                time.sleep(0.1)
            secs = time.perf_counter() - t0
            table.add(
                f"[{env.kind}] directory metadata change bringing {n_dir:,} existing files "
                f"into a query: all attached {secs:.1f} s after the change (target <= 10 s)"
            )
        finally:
            agent.kill()
            agent.wait(30)
            log.close()
    table.show()


if __name__ == "__main__":
    main()
