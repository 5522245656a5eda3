"""File catalog through the API: bulk registration with metadata, streamed directory listing.

1. Registration: N files (20,000 by default, 100,000 with ``--full``) in batches of 1,000
   (``POST /api/catalog/files``, no SE verification), each file with 2 file-level metadata
   keys (an int and a string), into one directory; files/s over the whole run, one client.
2. Listing: ``GET /api/catalog/dir`` (NDJSON) of that directory of N files, read to the end
   with httpx (raw lines; the long listing and the plain one, ``long=false``) and with
   ``Client.listdir`` (long, parsed DirEntry models); median of ``--runs``. The server's
   memory (RSS) before and after is printed.

Targets (issue): registration >= 5,000 files/s; a 100,000-file listing in <= 1 s.

    .venv/bin/python bench/catalog.py [--db sqlite|mysql|postgresql|URL] [--full]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

BATCH = 1_000
DIR = "/bench/big"


def batch(b: int) -> list[dict[str, object]]:
    return [
        {
            "lfn": f"{DIR}/run{b:04d}_{i:04d}.simtel.zst",
            "size": 1_000_000 + i,
            "checksum": f"{(b * BATCH + i) & 0xFFFFFFFF:08x}",
            "metadata": {"runNumber": b * BATCH + i, "particle": ("gamma", "proton")[i % 2]},
        }
        for i in range(BATCH)
    ]


def rss_mb(server: C.Server) -> float:
    total = 0
    for pid in server.pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def main() -> None:
    import httpx

    from ctaprod.client.http import Client
    from ctaprod.core.metadata import FieldDeclaration
    from ctaprod.core.metaquery import FieldType
    from ctaprod.logic import metadata as M

    p = C.parser(__doc__ or "")
    p.add_argument("--files", type=int, default=None, help="files to register (x1,000)")
    args = p.parse_args()
    n = args.files or (100_000 if args.full else 20_000)
    nb = max(1, n // BATCH)
    n = nb * BATCH
    table = C.Table(f"catalog.py results (n={n:,})")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        admin = C.user_identity("admin", "admin")
        admin = admin.__class__(**{**admin.__dict__, "properties": frozenset({"Admin"})})
        M.add_field(
            prep.services.ctx, admin, FieldDeclaration(name="runNumber", type=FieldType.INT)
        )
        M.add_field(
            prep.services.ctx, admin, FieldDeclaration(name="particle", type=FieldType.STRING)
        )
        bodies = [batch(b) for b in range(nb)]
        with C.Server(env, prep, args.workers) as server:
            headers = {"Authorization": f"Bearer {prep.admin_token}"}
            with httpx.Client(base_url=server.url, timeout=600, headers=headers) as c:
                warm = [{"lfn": "/bench/warm/f", "size": 1, "checksum": "1"}]
                c.post(
                    "/api/catalog/files", json=warm, params={"verify": "false"}
                ).raise_for_status()
                latencies = []
                cpu0 = server.cpu_seconds()
                with C.Profiler(server, args.profile, "registration"):
                    t0 = time.perf_counter()
                    for body in bodies:
                        t1 = time.perf_counter()
                        r = c.post("/api/catalog/files", json=body, params={"verify": "false"})
                        latencies.append(time.perf_counter() - t1)
                        r.raise_for_status()
                    wall = time.perf_counter() - t0
                cpu = server.cpu_seconds() - cpu0
                table.add(
                    f"[{env.kind}] registration of {n:,} files with 2 metadata keys in batches "
                    f"of {BATCH} (httpx, 1 client): {wall:.2f} s = {n / wall:,.0f} files/s; per "
                    f"call p50 {1000 * C.med(latencies):.0f} ms, p99 "
                    f"{1000 * C.pct(latencies, 99):.0f} ms; server CPU {cpu / wall:.2f} cores "
                    f"(target >= 5,000 files/s)"
                )
                rss0 = rss_mb(server)
                raw_times: dict[bool, list[float]] = {True: [], False: []}
                with C.Profiler(server, args.profile, "listing"):
                    for _ in range(args.runs):
                        for long in (True, False):
                            params = {"path": DIR, "long": str(long).lower()}
                            t0 = time.perf_counter()
                            with c.stream("GET", "/api/catalog/dir", params=params) as resp:
                                resp.raise_for_status()
                                lines = sum(chunk.count(b"\n") for chunk in resp.iter_bytes())
                            raw_times[long].append(time.perf_counter() - t0)
                            assert lines == n, (lines, n)
            parsed_times = []
            with Client(server.url, prep.admin_token) as cli:
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    count = sum(1 for _ in cli.listdir(DIR))
                    parsed_times.append(time.perf_counter() - t0)
                    assert count == n, (count, n)
            rss1 = rss_mb(server)
            table.add(
                f"[{env.kind}] listing of a directory of {n:,} files (NDJSON stream), median of "
                f"{args.runs}: long (owner, group, time, size, checksum, status) raw httpx "
                f"{C.med(raw_times[True]):.2f} s, through Client.listdir (parsed models) "
                f"{C.med(parsed_times):.2f} s; plain (kind, name; ls without -l) raw "
                f"{C.med(raw_times[False]):.2f} s; server RSS {rss0:.0f} -> {rss1:.0f} MB "
                f"(target <= 1 s for 100,000)"
            )
        from sqlalchemy import func, select

        from ctaprod.db.tables import catalog_events, catalog_files, file_meta_int, file_meta_str

        with prep.services.ctx.db.read() as conn:
            counts = [
                conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (catalog_files, catalog_events, file_meta_int, file_meta_str)
            ]
        assert counts == [n + 1, n + 1, n, n], counts
        print(
            f"# check: {counts[0]:,} files, {counts[1]:,} events, {counts[2]:,}+{counts[3]:,} "
            "metadata values"
        )
    table.show()


if __name__ == "__main__":
    main()
