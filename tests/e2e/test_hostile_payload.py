"""A hostile job looks for credentials and server state from its payload, and finds nothing.

The payload (HOSTILE, a Python script shipped in the input sandbox) reads the environment of
its parent and of every process it can see (and their command lines), its own descriptors,
walks every directory from its working directory up to ``/`` (and the paths it was told:
the server's state directory, the pilot's work directory, ``/root``), and looks there for
``secret.key``, databases, ``spec.json``, ``final_status.json`` and anything token-like
(a JWT, a ``CTAPROD_`` credential variable). It prints what it found, one JSON line each.
The tests run it through a real pilot on the Local CE -- once submitted by the pilot factory
of a real server, once under ``ctaprod up`` -- and assert that it found nothing, and that no
real secret appears anywhere in what it printed. ``HOSTILE_SANDBOX=none`` runs the first
test without a sandbox, to see what the job finds then (pilot and admin tokens, spec files,
databases: it fails).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from ctaprod.agents.pilot_factory import ComputingElements, PilotFactory
from ctaprod.agents.runner import AgentContext
from ctaprod.client.http import Client
from ctaprod.client.submit import submit_file
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.settings import QueueConfig
from ctaprod.pilot.sandbox import bwrap_works
from ctaprod.resources.computing import PilotSpec
from tests.conftest import free_port

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        bwrap_works("bwrap") is not None,
        reason="bubblewrap unusable here: payloads cannot be isolated (scripts/install-sandbox.sh)",
    ),
]

HOSTILE = r"""
import json, os, re, sys, time

found = []
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
NAMES = re.compile(
    r"(secret\.key|admin-token|token|spec\.json|final_status\.json|.*\.(db|sqlite|sqlite3))$"
)
ALLOWED_ENV = ("CTAPROD_JOB_ID", "CTAPROD_JOB_DIR", "CTAPROD_CTA_", "CTAPROD_STANDIN_")
me = os.getpid()
own = set()  # this job's own files, shipped or written by the wrapper for it
for name in ("hostile.py",):
    own.add(os.path.abspath(name))

def report(kind, where, what=""):
    found.append({"kind": kind, "where": where, "what": what[:200]})

def scan_bytes(data, where):
    for m in JWT.finditer(data):
        report("jwt", where, m.group().decode(errors="replace"))
    for m in re.finditer(rb"CTAPROD_(PILOT_TOKEN|TOKEN)=[A-Za-z0-9_.-]{20,}", data):
        report("credential variable", where, m.group().decode(errors="replace"))

# 1. the environment: ours, our parent's, every process we can see
for key, value in os.environ.items():
    if key.startswith("CTAPROD") and not key.startswith(ALLOWED_ENV):
        report("own env", key, value)
    scan_bytes(f"{key}={value}".encode(), "own env")
pids = [p for p in os.listdir("/proc") if p.isdigit()]
print(json.dumps({"visible_pids": sorted(int(p) for p in pids), "ppid": os.getppid()}))
for pid in pids + [str(os.getppid())]:
    for part in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{part}", "rb") as f:
                data = f.read()
        except OSError:
            continue
        scan_bytes(data, f"/proc/{pid}/{part}")
        if part == "environ" and int(pid) != me:
            for item in data.split(b"\0"):
                if item.startswith(b"CTAPROD_PILOT") or item.startswith(b"CTAPROD_SECRET"):
                    report("foreign env", f"/proc/{pid}/environ", item.decode(errors="replace"))
# 2. descriptors we inherited
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
extra = []
for fd in fds:
    if fd > 2:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("/proc"):
            extra.append(target)
if extra:
    report("inherited descriptors", "fds", repr(extra))

# 3. the file system: from the cwd up to /, and the places we were told about
SKIP = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"}
deadline = time.monotonic() + 20
seen = set()
def walk(top):
    for root, dirs, files in os.walk(top):
        if time.monotonic() > deadline:
            report("gave up", root)
            return
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP and d != "site-packages"]
        for name in files:
            path = os.path.join(root, name)
            if path in seen or path in own:
                continue
            seen.add(path)
            if NAMES.match(name):
                report("file", path)
            try:
                if os.path.getsize(path) < 1 << 20:
                    with open(path, "rb") as f:
                        scan_bytes(f.read(), path)
            except OSError:
                pass

here = os.getcwd()
ancestors = [here]
while os.path.dirname(ancestors[-1]) != ancestors[-1]:
    ancestors.append(os.path.dirname(ancestors[-1]))
print(json.dumps({"ancestors": {a: sorted(os.listdir(a)) for a in ancestors}}))
for top in [*ancestors[:-1], *sys.argv[1:], "/root", "/tmp", "/"]:
    if os.path.isdir(top):
        walk(top)
    elif os.path.exists(top):
        report("named path exists", top)

for item in found:
    print(json.dumps(item))
print(f"FOUND {len(found)}")
"""


def hostile_job(tmp_path: Path, *known_paths: Path) -> Path:
    """A JDL of the hostile job, told the paths an attacker might guess."""
    (tmp_path / "hostile.py").write_text(HOSTILE)
    args = " ".join(["hostile.py", *map(str, known_paths)])
    jdl = tmp_path / "hostile.jdl"
    jdl.write_text(
        f'Executable = "{sys.executable}";\nArguments = "{args}";\n'
        'InputSandbox = {"hostile.py"};\nCPUTime = 300;\n'
    )
    return jdl


def verdict(client: Client, job_id: int, tmp_path: Path, secrets: list[str]) -> list[str]:
    """The payload's output, asserted to contain no secret; its lines."""
    dest = tmp_path / f"out_{job_id}.tar.gz"
    client.download_output(job_id, dest)
    with tarfile.open(dest) as tar:
        member = tar.extractfile("std.out")
        assert member is not None
        out = member.read().decode()
        err_member = tar.extractfile("std.err")
        err = err_member.read().decode() if err_member else ""
    for secret in secrets:
        assert secret not in out, "a secret reached the payload"
    lines = out.splitlines()
    assert lines, err
    assert lines[-1] == "FOUND 0", out + err
    return lines


def wait_final(client: Client, job_id: int, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while (job := client.job(job_id)).status not in FINAL_STATES:
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.5)
    return job


def test_hostile_payload_under_a_local_ce_pilot_finds_nothing(
    live_server: Any, tmp_path: Path
) -> None:
    services = live_server.services
    settings = services.ctx.settings
    url = urlsplit(live_server.url)
    settings.host, settings.port = url.hostname, url.port  # what pilots are told
    # what a server keeps in its state directory, for the payload to (fail to) find
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "secret.key").write_text(settings.secret_key)
    (settings.state_dir / "admin-token").write_text(live_server.admin_token)
    url_db = settings.db_url()
    db_dir = Path(url_db.removeprefix("sqlite:///")).parent if "sqlite" in url_db else Path("/")
    work_root = tmp_path / "pilot-work"
    settings.queues = {
        "local": QueueConfig(
            site="LOCAL.localhost.org",
            max_waiting=1,
            max_total=1,
            cpu_time=200000,
            max_empty_matches=1,
            options={"slots": 1, "pilot_work_dir": str(work_root)},
            sandbox=os.environ.get("HOSTILE_SANDBOX", ""),  # type: ignore[arg-type]
        )
    }
    ces = ComputingElements(settings)
    factory = PilotFactory(services.ctx, services.matcher, services.tokens, ces)
    specs: list[PilotSpec] = []  # what the factory gave its pilot, credential included
    spec_for = factory.spec_for

    def keeping(name: str, queue: QueueConfig, stamp: str) -> PilotSpec:
        specs.append(spec_for(name, queue, stamp))
        return specs[-1]

    factory.spec_for = keeping  # type: ignore[method-assign]
    with Client(live_server.url, live_server.admin_token, timeout=10) as admin:
        (job_id,) = submit_file(admin, hostile_job(tmp_path, settings.state_dir, work_root, db_dir))
        deadline = time.monotonic() + 20
        while factory.run_once(AgentContext("pilot_factory")) == 0:
            assert time.monotonic() < deadline, "no pilot submitted"
            time.sleep(0.2)
        credential = specs[0].credential
        try:
            job = wait_final(admin, job_id)
        finally:
            ce = ces.get("local")
            ce.cancel([p.name for p in ce.work_dir.iterdir() if p.is_dir()])
        assert job.status is JobStatus.DONE, (job.minor_status, job.application_status)
        secrets = [credential, live_server.admin_token, settings.secret_key]
        lines = verdict(admin, job_id, tmp_path, secrets)
    header = json.loads(lines[0])
    assert header["ppid"] == 1  # its parent is the sandbox's init, not the pilot
    assert len(header["visible_pids"]) <= 3
    # the CE kept the credential out of its files
    for spec in (settings.state_dir / "pilots" / "local").glob("*/spec.json"):
        text = spec.read_text()
        assert credential not in text
        assert json.loads(text)["env"]["CTAPROD_PILOT_WORK_DIR"].startswith(str(work_root))


@pytest.fixture
def up(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """`ctaprod up` (SQLite, its own state directory) in a subprocess."""
    port = free_port()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAPROD_")}
    env.update(
        CTAPROD_STATE_DIR=str(state),
        CTAPROD_PORT=str(port),
        CTAPROD_CONFIG_DIR=str(tmp_path / "client"),
        CTAPROD_AGENTS__PILOT_FACTORY__INTERVAL="1",
        CTAPROD_AGENTS__PILOT_STATUS__INTERVAL="1",
    )
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "ctaprod up did not start"
            time.sleep(0.2)
        token = (tmp_path / "client" / "token").read_text().strip()
        with Client(url, token, timeout=10) as client:
            yield SimpleNamespace(client=client, state=state, log=log, token=token)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        for p in psutil.process_iter(["environ"]):
            try:
                if (
                    (p.info["environ"] or {})
                    .get("CTAPROD_PILOT_WORK_DIR", "")
                    .startswith(str(state))
                ):
                    p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


@pytest.mark.skipif(
    os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
    reason="ctaprod up on its embedded SQLite default: once, in the SQLite session",
)
def test_hostile_payload_under_ctaprod_up_finds_nothing(
    up: SimpleNamespace, tmp_path: Path
) -> None:
    state = up.state
    work = state.with_name(state.name + "-work")
    (job_id,) = submit_file(up.client, hostile_job(tmp_path, state, work, Path.home()))
    job = wait_final(up.client, job_id)
    assert job.status is JobStatus.DONE, (job.minor_status, job.application_status)
    secret = (state / "secret.key").read_text().strip()
    verdict(up.client, job_id, tmp_path, [secret, up.token])
    # owner-only modes: the state directory, its key and database, the stored sandboxes
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("secret.key", "ctaprod.db"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    stored = [p for p in (state / "storage").rglob("*") if p.is_file()]
    assert stored
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in stored)
    # the pilots worked outside the state directory
    specs = list((state / "pilots" / "local").glob("*/spec.json"))
    assert specs
    for spec in specs:
        work_dir = json.loads(spec.read_text())["env"]["CTAPROD_PILOT_WORK_DIR"]
        assert Path(work_dir).is_relative_to(work)
    assert "payloads run in a bubblewrap sandbox" in up.log.read_text()
