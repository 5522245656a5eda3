"""Shared machinery of the benchmarks: a fresh database, the real server, wrk, py-spy.

Every benchmark script:

1. creates a fresh database (``--db sqlite|mysql|postgresql|<url>``), migrates it and
   bootstraps the identities in-process (:func:`prepare`), which gives an admin token and a
   pilot token;
2. loads its bulk data directly through the DB/logic layers (fast, not what is measured);
3. starts the real server as a subprocess (``python -m uvicorn --factory
   ctaprod.server.asgi:create_app_from_env``) on a free port (:class:`Server`);
4. measures through the HTTP API, with ``wrk`` + Lua (:func:`run_wrk`) for per-request rates
   and with plain ``httpx`` where one request (or a few sequential ones) is timed;
5. stops the server and drops the database.

``--profile`` samples the server with py-spy during the measured phase and prints the
functions where it spends its time (:class:`Profiler`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVER_URLS = {
    "mysql": "mysql+pymysql://root@127.0.0.1:3306",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432",
}


# --- command line ---------------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--db",
        default="sqlite",
        help="sqlite, mysql (MariaDB), postgresql, or a SQLAlchemy server URL "
        "(a fresh database is created on it and dropped at the end)",
    )
    p.add_argument("--full", action="store_true", help="the sizes of the issue (slower)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per wrk run (default: 5, --full: 15)"
    )
    p.add_argument("--runs", type=int, default=3, help="measured runs (the median is reported)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy during the measured phase",
    )
    p.add_argument("--keep", action="store_true", help="keep the database and the temp dir")
    return p


def duration(args: argparse.Namespace) -> float:
    return float(args.duration or (15.0 if args.full else 5.0))


# --- database ---------------------------------------------------------------------------------
@dataclass
class BenchEnv:
    """A temporary state directory and a fresh database URL."""

    url: str
    tmp: Path
    engine: str  # sqlite, mysql, postgresql
    dropper: Any = None

    @property
    def kind(self) -> str:
        return {"mysql": "MariaDB", "postgresql": "PostgreSQL"}.get(self.engine, "SQLite")


@contextlib.contextmanager
def bench_env(db: str, keep: bool = False) -> Iterator[BenchEnv]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    tmp = Path(tempfile.mkdtemp(prefix="ctaprod-bench-"))
    name = f"ctaprod_bench_{uuid.uuid4().hex[:10]}"
    base = SERVER_URLS.get(db, db)
    env: BenchEnv
    if base == "sqlite":
        env = BenchEnv(f"sqlite:///{tmp / 'bench.db'}", tmp, "sqlite")
    elif base.startswith("sqlite"):
        env = BenchEnv(base, tmp, "sqlite")
    else:
        from ctaprod.db.engine import normalize_url

        server = make_url(normalize_url(base))
        engine = "postgresql" if server.get_backend_name() == "postgresql" else "mysql"
        admin_db = "postgres" if engine == "postgresql" else "mysql"
        admin = create_engine(server.set(database=admin_db), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = server.set(database=name).render_as_string(hide_password=False)
        env = BenchEnv(url, tmp, engine, admin)
    print(f"# database: {env.kind} ({_redact(env.url)}); state dir {tmp}", flush=True)
    print(f"# machine: {machine_state(tmp)}", flush=True)
    try:
        yield env
    finally:
        if keep:
            print(f"# kept: {_redact(env.url)} and {tmp}")
        else:
            if env.dropper is not None:
                with env.dropper.connect() as conn:
                    force = " WITH (FORCE)" if env.engine == "postgresql" else ""
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
                env.dropper.dispose()
            shutil.rmtree(tmp, ignore_errors=True)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Prepared:
    services: Any  # ctaprod.api.deps.Services
    admin_token: str
    pilot_token: str
    secret: str


def prepare(env: BenchEnv) -> Prepared:
    """Migrate the database and bootstrap identities in-process (as ``ctaprod server`` does)."""
    from ctaprod.core.settings import Settings
    from ctaprod.server.services import build_services, ensure_identities

    secret = secrets.token_urlsafe(48)
    settings = Settings(database_url=env.url, state_dir=env.tmp / "state", secret_key=secret)
    services = build_services(settings)
    admin, pilot = ensure_identities(services)
    assert admin is not None, "the database was not empty"
    assert pilot is not None
    return Prepared(services, admin, pilot, secret)


def add_users(prep: Prepared, groups: dict[str, float], users: dict[str, str]) -> None:
    """Create groups (name -> share) and users (name -> group) through logic.auth."""
    from ctaprod.logic.auth import add_group, add_user

    for g, share in groups.items():
        add_group(prep.services.ctx, g, ["NormalUser"], share, "benchmark group")
    for u, g in users.items():
        add_user(prep.services.ctx, u, [g])


def user_identity(user: str, group: str) -> Any:
    from ctaprod.core.identity import Identity
    from ctaprod.core.properties import TokenKind

    return Identity(
        user=user, group=group, kind=TokenKind.USER, properties=frozenset({"NormalUser"})
    )


# --- the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The real server (uvicorn, factory app) in a subprocess, on a free port."""

    def __init__(
        self,
        env: BenchEnv,
        prep: Prepared,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = env.tmp / f"server-{self.port}.log"
        environ = dict(os.environ)
        environ.update(
            {
                "CTAPROD_DATABASE_URL": env.url,
                "CTAPROD_STATE_DIR": str(env.tmp / "state"),
                "CTAPROD_SECRET_KEY": prep.secret,
            }
        )
        environ.update(extra_env or {})
        environ.pop("CTAPROD_CONFIG", None)
        cmd = [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "ctaprod.server.asgi:create_app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        self.workers = workers
        self._logfh = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            env=environ,
            stdout=self._logfh,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    if self.workers > 1:
                        time.sleep(1.0)  # let every worker come up
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        self._logfh.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def pids(self) -> list[int]:
        """The server process and its workers."""
        out = [self.proc.pid]
        with contextlib.suppress(FileNotFoundError, ValueError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            out += [int(p) for p in children.split()]
        return out

    def cpu_seconds(self) -> float:
        """User+system CPU time used so far by the server and its workers."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._logfh.close()
        errors = [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if "Traceback" in line or "ERROR" in line
        ]
        if errors:
            print(f"# server log has {len(errors)} error lines, e.g. {errors[0]!r}; see {self.log}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def client(server: Server, token: str, timeout: float = 300.0) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
    )


def register_pilots(
    server: Server, pilot_token: str, n: int, site: str = "BENCH.site.org", prefix: str = "bench"
) -> list[tuple[int, str]]:
    """Register ``n`` pilots through the API: [(pilot_id, session_token)]."""
    out = []
    with client(server, pilot_token) as c:
        for i in range(n):
            r = c.post(
                "/api/pilots/register",
                json={
                    "stamp": f"{prefix}-{i}-{uuid.uuid4().hex[:8]}",
                    "site": site,
                    "ce": "bench-ce",
                    "queue": "bench",
                },
            )
            r.raise_for_status()
            body = r.json()
            out.append((int(body["pilot_id"]), str(body["session_token"])))
    return out


# --- wrk ------------------------------------------------------------------------------------
LUA_COMMON = r"""
local threads = {}
local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

statuses = {}
function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if on_response then on_response(status, body) end
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do agg[k] = (agg[k] or 0) + v end
  end
  if on_done then on_done(threads) end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, table.concat(parts, ", ")))
end
"""


def lua_string(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal here


@dataclass
class WrkResult:
    requests: int
    seconds: float
    statuses: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    server_cpu: float = 0.0  # server CPU seconds used during the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def count(self, *codes: int) -> int:
        return sum(self.statuses.get(str(c), 0) for c in codes)

    def rate_of(self, *codes: int) -> float:
        return self.count(*codes) / self.seconds if self.seconds else 0.0


def run_wrk(
    server: Server,
    lua_body: str,
    *,
    seconds: float,
    connections: int = 4,
    threads: int = 2,
    path: str = "/",
    timeout: float = 30.0,
    tmp: Path | None = None,
) -> WrkResult:
    """Run wrk with ``lua_body`` (which defines request()/init(); the status counting and the
    JSON summary are added) against ``server`` and return its figures."""
    script = Path(tempfile.mkstemp(suffix=".lua", dir=tmp)[1])
    script.write_text(lua_body + "\n" + LUA_COMMON)
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:.0f}s",
        "--timeout",
        f"{timeout:.0f}s",
        "-s",
        str(script),
        server.url + path,
    ]
    cpu0 = server.cpu_seconds()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    cpu = server.cpu_seconds() - cpu0
    script.unlink(missing_ok=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    d = json.loads(line[len("WRK_JSON ") :])
    return WrkResult(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        statuses=d["statuses"],
        p50_ms=d["p50_us"] / 1e3,
        p90_ms=d["p90_us"] / 1e3,
        p99_ms=d["p99_us"] / 1e3,
        max_ms=d["max_us"] / 1e3,
        socket_errors=d["errors_connect"]
        + d["errors_read"]
        + d["errors_write"]
        + d["errors_timeout"],
        server_cpu=cpu,
    )


def wrk_line(label: str, r: WrkResult, per_request: int = 1, unit: str = "req/s") -> str:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
    rate = r.rate * per_request
    return (
        f"{label:<44} {rate:>9,.0f} {unit:<8} p50 {r.p50_ms:6.1f} ms  p99 "
        f"{r.p99_ms:7.1f} ms  [{codes}]"
        + (f" socket errors {r.socket_errors}" if r.socket_errors else "")
        + f"  server CPU {r.server_cpu / r.seconds:.2f} cores"
    )


def median_wrk(results: Sequence[WrkResult]) -> WrkResult:
    """The run with the median rate."""
    ordered = sorted(results, key=lambda r: r.rate)
    return ordered[len(ordered) // 2]


# --- py-spy -----------------------------------------------------------------------------------
class Profiler:
    """Sample the server (and its workers) with py-spy while the block runs."""

    def __init__(self, server: Server, enabled: bool, label: str, rate: int = 250) -> None:
        self.enabled = enabled and shutil.which("py-spy") is not None
        if enabled and not self.enabled:
            print("# --profile: py-spy not found (pip install py-spy); not profiling")
        self.server = server
        self.label = label
        self.rate = rate
        self.out = server.log.with_name(f"profile-{label.replace(' ', '_')}.txt")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self.enabled:
            self.proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--subprocesses",
                    "--gil",
                    "-r",
                    str(self.rate),
                    "-f",
                    "raw",
                    "-o",
                    str(self.out),
                    "-p",
                    str(self.server.proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.out.exists():
            print_profile(self.out, self.label)


def print_profile(path: Path, label: str, top: int = 25) -> None:
    """Summarise py-spy collapsed stacks: self time and inclusive time per function."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_t[_short(frames[-1])] += count
        for f in {_short(f) for f in frames}:
            incl[f] += count
    if not total:
        return
    print(
        f"\n## py-spy profile of the server during {label}: {total} samples "
        f"(threads holding the GIL only); raw stacks in {path}"
    )
    print("self time:")
    for f, n in self_t.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("inclusive time (ctaprod, sqlalchemy, drivers, fastapi/pydantic):")
    keep = (
        "ctaprod",
        "sqlalchemy",
        "pymysql",
        "psycopg",
        "sqlite",
        "fastapi",
        "pydantic",
        "starlette",
        "jwt",
    )
    shown = 0
    for f, n in incl.most_common():
        if any(k in f for k in keep):
            print(f"  {100 * n / total:5.1f}%  {f}")
            shown += 1
            if shown >= top:
                break


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (pkg/file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def machine_state(where: Path) -> str:
    """Load average and fsyncs/s of the disk: the benchmarks share a noisy 2-vCPU machine."""
    probe = where / "fsync.probe"
    n, t0 = 0, time.perf_counter()
    with probe.open("wb") as fh:
        while time.perf_counter() - t0 < 0.5:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
            n += 1
    rate = n / (time.perf_counter() - t0)
    probe.unlink()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average {load} on {os.cpu_count()} CPUs; {rate:,.0f} fsyncs/s"


# --- misc -----------------------------------------------------------------------------------
@dataclass
class Table:
    """Result lines collected and printed at the end."""

    title: str
    rows: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        print(line, flush=True)
        self.rows.append(line)

    def show(self) -> None:
        print(f"\n## {self.title}")
        for r in self.rows:
            print(r)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@contextlib.contextmanager
def capture_sql(target: Any) -> Iterator[list[tuple[str, Any]]]:
    """Record the (statement, parameters) the code under test sends on ``target`` (an engine
    or a connection)."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def _record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, params))

    event.listen(target, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", _record)


def explain(conn: Any, engine: str, sql: str, params: Any = None) -> str:
    """The query plan of ``sql`` (as sent to the driver, with its parameters) on this engine;
    with ANALYZE where the engine has it (the statement then runs: use a transaction that
    is rolled back)."""
    params = params if params is not None else ()

    def run(prefix: str) -> Any:
        return conn.exec_driver_sql(prefix + sql, params)

    if engine == "sqlite":
        return "\n".join(f"  {r[3]}" for r in run("EXPLAIN QUERY PLAN ").fetchall())
    if engine == "postgresql":
        return "\n".join(f"  {r[0]}" for r in run("EXPLAIN (ANALYZE, BUFFERS) ").fetchall())
    lines = []
    for r in run("EXPLAIN ").mappings().fetchall():
        lines.append(
            "  "
            + ", ".join(
                f"{k}={r[k]}"
                for k in ("select_type", "table", "type", "key", "key_len", "rows", "Extra")
            )
        )
    analyzed = run("ANALYZE FORMAT=JSON ").scalar()
    try:
        block = json.loads(analyzed)["query_block"]
        tbl = _find_table(block)
        lines.append(
            f"  ANALYZE: query {block.get('r_total_time_ms')} ms; table {tbl.get('table_name')}"
            f" key={tbl.get('key')} r_rows={tbl.get('r_rows')} r_filtered="
            f"{tbl.get('r_filtered')} filesort={'filesort' in json.dumps(block)}"
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return "\n".join(lines)


def _find_table(node: Any) -> dict[str, Any]:
    if isinstance(node, dict):
        if "table" in node and isinstance(node["table"], dict):
            return dict(node["table"])
        for v in node.values():
            found = _find_table(v)
            if found:
                return found
    if isinstance(node, list):
        for v in node:
            found = _find_table(v)
            if found:
                return found
    return {}


def one_line(sql: str) -> str:
    return " ".join(sql.split())
