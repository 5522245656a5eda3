"""Metadata queries: latency of a query returning ~10,000 LFNs, of its count, and server memory
while streaming every file, on a CTA-like catalog.

Setup (direct bulk SQL, not measured): 100,000 files by default, 1,000,000 with ``--full``
(``--files N`` for the 3M/10M projection), laid out as CTADIRAC does:
``/ctao/MC/PROD6/<site>/<particle>/sim_telarray/<transformation>/<outputType>/<NNNxxx>/<file>``
with 2 sites x 4 particles x 6 transformations (thetaP 20/40/60 x phiP 0/180) x 2 output
types, 1,000 files per ``NNNxxx`` directory. Metadata on directories (MCCampaign, site,
particle, tel_sim_prog, thetaP, phiP, array_layout, data_level, outputType: own values and
the effective table ``dir_meta_eff``), on files runNumber and split (0-3); then ANALYZE.

Measure through the real server (uvicorn subprocess), sequential httpx requests:

- ``POST /api/metadata/find`` with ``particle=gamma thetaP=20 phiP=180 split=0`` (3 directory
  keys, 1 file key: ~10,400 LFNs at 1M files), whole answer read; median of ``--requests``;
- ``POST /api/metadata/count`` of the same query; median;
- the first page (1,000) of ``POST /api/metadata/find/page``;
- streaming every file (``MCCampaign=Prod6``): time, LFNs/s and the server's RSS before,
  at its peak during, and after the stream.

Targets (issue, at 1,000,000 files): find <= 200 ms median, count <= 50 ms, flat memory.

    .venv/bin/python bench/metaquery.py [--db sqlite|mysql|postgresql|URL] [--full] [--files N]
        [--query Q]
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C

SITES = ["Paranal", "LaPalma"]
PARTICLES = ["gamma", "gamma-diffuse", "proton", "electron"]
POINTINGS = [(t, p) for t in (20.0, 40.0, 60.0) for p in (0.0, 180.0)]
OUTPUTS = ["Data", "Log"]
FIELDS = {
    "MCCampaign": "string", "site": "string", "particle": "string", "tel_sim_prog": "string",
    "thetaP": "float", "phiP": "float", "array_layout": "string", "data_level": "int",
    "outputType": "string", "runNumber": "int", "split": "int",
}  # fmt: skip
QUERY = "particle=gamma thetaP=20 phiP=180 split=0"
BASE = "/ctao/MC/PROD6"


class Loader:
    """Rows of the catalog and metadata tables, written in big executemany batches."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.dirs: list[dict[str, Any]] = []
        self.own: list[dict[str, Any]] = []
        self.eff: list[dict[str, Any]] = []
        self.eff_of: dict[int, dict[str, tuple[Any, int]]] = {}

    def mkdir(self, path: str, parent: int | None, meta: dict[str, Any]) -> int:
        dir_id = len(self.dirs) + 1
        self.dirs.append(
            {"dir_id": dir_id, "parent_id": parent, "name": path.rsplit("/", 1)[-1] or "/",
             "path": path, "path_hash": hashlib.sha1(path.encode()).hexdigest(),
             "owner": "admin", "owner_group": "ctao_admin", "created": NOW}
        )  # fmt: skip
        eff = dict(self.eff_of.get(parent, {})) if parent else {}
        for name, value in meta.items():
            self.own.append({"dir_id": dir_id, "field": name, **_cols(value)})
            eff[name] = (value, dir_id)
        self.eff_of[dir_id] = eff
        self.eff += [
            {"dir_id": dir_id, "field": n, "source_dir_id": s, **_cols(v)}
            for n, (v, s) in eff.items()
        ]
        return dir_id


def _cols(value: Any) -> dict[str, Any]:
    return {
        "vint": value if isinstance(value, int) else None,
        "vfloat": value if isinstance(value, float) else None,
        "vstr": value if isinstance(value, str) else None,
    }


NOW: Any = None


def populate(prep: C.Prepared, n: int) -> None:
    global NOW
    from sqlalchemy import insert

    from ctaprod.core.metadata import FieldDeclaration
    from ctaprod.core.properties import TokenKind
    from ctaprod.db import tables as T
    from ctaprod.logic import metadata as M

    ctx = prep.services.ctx
    NOW = ctx.clock()
    admin = prep.services.tokens.verify(prep.admin_token)
    assert admin.kind is TokenKind.USER
    for name, ftype in FIELDS.items():
        M.add_field(ctx, admin, FieldDeclaration(name=name, type=ftype))
    t0 = time.perf_counter()
    leaves = [(s, p, pt, o) for s in SITES for p in PARTICLES for pt in POINTINGS for o in OUTPUTS]
    per_leaf = -(-n // len(leaves))
    with ctx.db.write() as conn:
        load = Loader(conn)
        parent = None
        for depth, part in enumerate(["", "ctao", "MC", "PROD6"]):
            path = "/" + "/".join(p for p in ["ctao", "MC", "PROD6"][:depth] if p)
            meta = {"MCCampaign": "Prod6"} if part == "PROD6" else {}
            parent = load.mkdir(path, parent, meta)
        dirs: dict[str, int] = {}
        file_id, made = 0, 0
        files: list[dict[str, Any]] = []
        fmeta: list[dict[str, Any]] = []
        for index, (site, particle, (theta, phi), output) in enumerate(leaves):
            trans = 1000 + index // len(OUTPUTS)
            chain = [
                (site, {"site": site}),
                (particle, {"particle": particle}),
                ("sim_telarray", {"tel_sim_prog": "sim_telarray"}),
                (str(trans), {"thetaP": theta, "phiP": phi, "array_layout": "Alpha",
                              "data_level": -1}),
                (output, {"outputType": output}),
            ]  # fmt: skip
            up, path = parent, BASE
            for name, meta in chain:
                path = f"{path}/{name}"
                if path not in dirs:
                    dirs[path] = load.mkdir(path, up, meta)
                up = dirs[path]
            for run in range(min(per_leaf, n - made)):
                chunk_path = f"{path}/{run // 1000:03d}xxx"
                if chunk_path not in dirs:
                    dirs[chunk_path] = load.mkdir(chunk_path, up, {})
                file_id += 1
                made += 1
                files.append(
                    {"file_id": file_id, "dir_id": dirs[chunk_path],
                     "name": f"run{run:06d}___cta-prod6_{particle}.simtel.zst",
                     "size": 1_000_000 + run, "checksum": "0badc0de",
                     "guid": f"{file_id:036d}", "owner": "admin", "owner_group": "ctao_admin",
                     "created": NOW}
                )  # fmt: skip
                at = dirs[chunk_path]
                fmeta.append({"file_id": file_id, "field": "runNumber", "value": run, "dir_id": at})
                fmeta.append({"file_id": file_id, "field": "split", "value": run % 4, "dir_id": at})
                if len(files) >= 50_000:
                    conn.execute(insert(T.catalog_files), files)
                    conn.execute(insert(T.file_meta_int), fmeta)
                    files, fmeta = [], []
        if files:
            conn.execute(insert(T.catalog_files), files)
            conn.execute(insert(T.file_meta_int), fmeta)
        conn.execute(insert(T.catalog_dirs), load.dirs)
        conn.execute(insert(T.dir_meta), load.own)
        conn.execute(insert(T.dir_meta_eff), load.eff)
    loaded = time.perf_counter() - t0
    with ctx.db.write() as conn:
        if ctx.db.dialect in ("mysql", "mariadb"):
            names = "catalog_dirs, catalog_files, dir_meta, dir_meta_eff, file_meta_int"
            conn.exec_driver_sql(f"ANALYZE TABLE {names}")
        else:
            conn.exec_driver_sql("ANALYZE")
    print(
        f"# setup: {made:,} files in {len(load.dirs):,} directories, {len(load.eff):,} "
        f"effective directory values, loaded in {loaded:.1f} s, analyzed in "
        f"{time.perf_counter() - t0 - loaded:.1f} s",
        flush=True,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(fn: Any, n: int) -> tuple[list[float], Any]:
    result = fn()
    for _ in range(2):
        result = fn()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        lat.append(1000 * (time.perf_counter() - t0))
    return lat, result


def stream_all(http: Any, server: C.Server) -> tuple[int, float, list[float]]:
    """Stream every LFN; (count, seconds, RSS samples of the server in MB)."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(server.proc.pid))
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    count, t0 = 0, time.perf_counter()
    body = {"query": "MCCampaign=Prod6"}
    with http.stream("POST", "/api/metadata/find", json=body) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes(1 << 16):
            count += chunk.count(b"\n")
    elapsed = time.perf_counter() - t0
    done.set()
    thread.join()
    return count, elapsed, samples


def main() -> None:
    p = C.parser(__doc__ or "")
    p.add_argument("--files", type=int, default=None, help="files in the catalog (100k / 1M)")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--query", default=QUERY, help=f"the measured query (default {QUERY!r})")
    args = p.parse_args()
    n = args.files or (1_000_000 if args.full else 100_000)
    table = C.Table(f"metaquery.py results ({n:,} files)")
    with C.bench_env(args.db, args.keep) as env:
        prep = C.prepare(env)
        populate(prep, n)
        with (
            C.Server(env, prep, args.workers) as server,
            C.client(server, prep.admin_token) as http,
        ):
            tag = f"[{env.kind}, {n:,} files]"
            query = args.query

            def find() -> int:
                r = http.post("/api/metadata/find", json={"query": query})
                r.raise_for_status()
                return r.text.count("\n")

            def count() -> Any:
                r = http.post("/api/metadata/count", json={"query": query})
                r.raise_for_status()
                return r.json()

            def page() -> Any:
                body = {"query": query, "limit": 1000}
                r = http.post("/api/metadata/find/page", json=body)
                r.raise_for_status()
                return r.json()

            lat, found = timed(find, args.requests)
            table.add(
                f"{tag} find '{query}': {found:,} LFNs; median {C.med(lat):.0f} ms, "
                f"p90 {C.pct(lat, 90):.0f} ms (target <= 200 ms at 1M files, 10,000 LFNs)"
            )
            lat, counted = timed(count, args.requests)
            table.add(
                f"{tag} count: {counted['count']:,} files, {counted['total_size']:,} bytes; "
                f"median {C.med(lat):.1f} ms, p90 {C.pct(lat, 90):.1f} ms (target <= 50 ms)"
            )
            assert counted["count"] == found, (counted, found)
            lat, first = timed(page, args.requests)
            table.add(
                f"{tag} find/page limit 1000: {len(first['lfns'])} LFNs; median {C.med(lat):.1f} ms"
            )
            before = rss_mb(server.proc.pid)
            streamed, secs, samples = stream_all(http, server)
            after = rss_mb(server.proc.pid)
            table.add(
                f"{tag} stream all: {streamed:,} LFNs in {secs:.1f} s "
                f"({streamed / secs:,.0f} LFNs/s); server RSS before {before:.0f} MB, "
                f"peak during {max(samples, default=before):.0f} MB, after {after:.0f} MB"
            )
            assert streamed == n, (streamed, n)
        prep.services.ctx.db.dispose()
    table.show()


if __name__ == "__main__":
    main()
