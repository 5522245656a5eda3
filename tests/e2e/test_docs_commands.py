"""Every command of README.md and docs/*.md runs as written, and exits 0.

The commands are the ``$ ...`` lines of the ```console blocks. Rules the docs follow so that
this test can run them:

- ``ctaprod up`` lines are the installation itself: the first test starts ``ctaprod up`` as a
  real process (on a HOME of its own, so that its token and URL land where the docs say) and
  runs every other block's commands against it, in the order of the files (README first).
- A block preceded by ``<!-- docs-test: production -->`` belongs to the production quickstart
  (docs/quickstart.md): the second test writes the quickstart's TOML to ``ctaprod.toml``, runs
  ``ctaprod db upgrade`` on an empty database, ``ctaprod server`` and ``ctaprod agents`` as real
  processes, reads the first admin credential the way the docs say, then runs those blocks.
- Lines that are neither ``ctaprod`` nor ``export`` (``python3 -m venv ...``) are not run.
- Placeholders: ``<REQUEST_ID>`` is a Failed request the test makes beforehand, ``<JTI>`` the
  newest token of the user the block issued one for (alice); the quickstart's public URL
  ``https://ctaprod.example.org`` is the test server's. Anything else is run literally.

Each line runs in ``bash -e -o pipefail`` (so ``a; b`` fails when ``a`` fails), with the
virtualenv's ``ctaprod`` first on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from ctaprod.client.http import Client
from ctaprod.core.requests import OperationSpec, RequestFile, RequestSpec, RequestStatus
from tests.conftest import free_port

# A fresh `ctaprod up` running ten jobs, or a production start, on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!--\s*docs-test:\s*(\w+)\s*-->")
PLACEHOLDER = re.compile(r"<[A-Z_]+>")
KNOWN_PLACEHOLDERS = {"<REQUEST_ID>", "<JTI>"}
PUBLIC_URL = "https://ctaprod.example.org"
COMMAND_TIMEOUT = 900  # `job status --wait` on a loaded 2-core machine


@dataclass
class Block:
    path: Path
    line: int
    marker: str
    commands: list[str]


def console_blocks(paths: list[Path] = DOC_FILES) -> list[Block]:
    """The ```console blocks of ``paths`` with their ``$`` lines and docs-test marker."""
    blocks: list[Block] = []
    for path in paths:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```console":
                before = lines[i - 1].strip() if i else ""
                match = MARKER.fullmatch(before)
                block = Block(path, i + 1, match.group(1) if match else "", [])
                i += 1
                while i < len(lines) and lines[i].strip() != "```":
                    if lines[i].startswith("$ "):
                        block.commands.append(lines[i][2:].strip())
                    i += 1
                blocks.append(block)
            i += 1
    return blocks


def _words(line: str) -> list[str]:
    return shlex.split(line, comments=True)


def runnable(line: str) -> bool:
    """Lines this test runs: ``ctaprod`` commands (not ``ctaprod up``) and ``export``."""
    words = _words(line)
    if not words or words[0] not in ("ctaprod", "export"):
        return False
    return words[:2] != ["ctaprod", "up"]


def clean_env(home: Path) -> dict[str, str]:
    """The test's environment without any CTAPROD_* or XDG setting, on a HOME of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CTAPROD_") and not k.startswith("XDG_")
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    return env


@dataclass
class Shell:
    """Runs doc lines one after the other, like an operator at a terminal."""

    env: dict[str, str]
    cwd: Path
    resolvers: dict[str, Callable[[Shell], str]] = field(default_factory=dict)
    literal: dict[str, str] = field(default_factory=dict)
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _resolved: dict[str, str] = field(default_factory=dict)

    def substitute(self, line: str) -> str:
        for old, new in self.literal.items():
            line = line.replace(old, new)
        for name in PLACEHOLDER.findall(line):
            if name not in self._resolved:
                self._resolved[name] = self.resolvers[name](self)
            line = line.replace(name, self._resolved[name])
        return line

    def run(self, line: str, where: str) -> subprocess.CompletedProcess[str]:
        command = self.substitute(line)
        if _words(command)[0] == "export":
            return self._export(command, where)
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        assert result.returncode == 0, (
            f"{where}: `{line}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        assert "Traceback" not in result.stdout + result.stderr, f"{where}: `{line}`"
        return result

    def _export(self, command: str, where: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-e", "-c", f"{command}\nenv -0"],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{where}: `{command}`: {result.stderr}"
        for item in result.stdout.split("\0"):
            key, sep, value = item.partition("=")
            if sep and key.startswith("CTAPROD_"):
                self.env[key] = value
        return result

    def start(self, line: str, log: Path) -> subprocess.Popen[bytes]:
        """A long-running command (``ctaprod server``, ``ctaprod agents``) in the background."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", "exec " + self.substitute(line)],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.background.append(proc)
        return proc

    def client(self) -> Client:
        """A client with the credentials the commands use (environment, else saved ones)."""
        config = Path(self.env["HOME"]) / ".config" / "ctaprod"
        url = self.env.get("CTAPROD_URL")
        if url is None:
            import json

            url = json.loads((config / "client.json").read_text())["url"]
        token = self.env.get("CTAPROD_TOKEN") or (config / "token").read_text().strip()
        return Client(url, token)


def failed_request(se: str) -> Callable[[Shell], str]:
    """A resolver of ``<REQUEST_ID>``: a request that fails (its file is not in the catalog)
    and ends Failed after its one allowed attempt."""

    def make(shell: Shell) -> str:
        spec = RequestSpec(
            name="docs-test",
            operations=[
                OperationSpec(
                    type="ReplicateAndRegister",
                    arguments={"target_ses": [se]},
                    files=[RequestFile(lfn="/ctao/docs-test/not-in-the-catalog.dat")],
                )
            ],
        )
        with shell.client() as cli:
            request_id = cli.create_request(spec)
            deadline = time.monotonic() + 300
            while cli.request_info(request_id).status is not RequestStatus.FAILED:
                assert time.monotonic() < deadline, f"request {request_id} never Failed"
                time.sleep(1)
        return str(request_id)

    return make


def newest_token(user: str) -> Callable[[Shell], str]:
    def find(shell: Shell) -> str:
        with shell.client() as cli:
            live = [t for t in cli.tokens(user) if t.revoked_at is None]
        assert live, f"no token of {user}"
        return max(live, key=lambda t: t.issued_at).jti

    return find


@contextmanager
def own_database(server_db_url: str, suffix: str, sqlite_path: Path) -> Iterator[str]:
    """A database of its own on the session's engine (an SQLite file for SQLite)."""
    if server_db_url.startswith("sqlite"):
        yield f"sqlite:///{sqlite_path}"
        return
    from sqlalchemy import create_engine, text

    base, _, name = server_db_url.rpartition("/")
    own = f"{name}_{suffix}"
    admin = "postgres" if base.startswith("postgresql") else "mysql"
    eng = create_engine(f"{base}/{admin}", isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {own}"))
    try:
        yield f"{base}/{own}"
    finally:
        with eng.connect() as conn:
            drop = f"DROP DATABASE IF EXISTS {own}"
            conn.execute(text(drop + (" WITH (FORCE)" if admin == "postgres" else "")))
        eng.dispose()


def stop(procs: list[subprocess.Popen[bytes]], home: Path) -> None:
    """SIGTERM the background commands, then kill whatever they or their pilots left."""
    leftovers: list[psutil.Process] = []
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            leftovers += psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            env = p.info["environ"] or {}
            if env.get("HOME") == str(home) and p.pid != os.getpid():
                leftovers.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for p in leftovers:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer\n{log.read_text()}"
        time.sleep(0.3)


def test_console_blocks_follow_the_rules() -> None:
    """The docs have commands, each runnable one is understood, no stray placeholder."""
    blocks = console_blocks()
    commands = [c for b in blocks for c in b.commands if runnable(c)]
    assert len(commands) >= 40
    assert {b.marker for b in blocks} <= {"", "production"}
    for block in blocks:
        for command in block.commands:
            unknown = set(PLACEHOLDER.findall(command)) - KNOWN_PLACEHOLDERS
            assert not unknown, f"{block.path.name}:{block.line}: {unknown} in `{command}`"
    readme = [c for b in blocks if b.path.name == "README.md" for c in b.commands]
    assert "ctaprod job submit docs/examples/my_job.jdl" in " ".join(readme)
    assert (ROOT / "docs" / "examples" / "my_job.jdl").is_file()


@pytest.mark.skipif(
    os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
    reason="the docs' commands do not depend on the engine: run once, on SQLite (the server "
    "databases run the production quickstart below); CI time",
)
def test_docs_commands_on_ctaprod_up(tmp_path: Path, server_db_url: str) -> None:
    """README and docs commands (not the production quickstart) on a fresh `ctaprod up`."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    shutil.copytree(ROOT / "docs" / "examples", work / "docs" / "examples")
    (work / "run001.simtel.zst").write_bytes(os.urandom(4096))  # the README's local file
    env = clean_env(home)
    port = free_port()
    env.update(
        CTAPROD_PORT=str(port),
        CTAPROD_DATA__REQUEST_MAX_ATTEMPTS="1",
        CTAPROD_AGENTS__PILOT_FACTORY__INTERVAL="1",
        CTAPROD_AGENTS__PILOT_STATUS__INTERVAL="2",
        CTAPROD_AGENTS__STALLED_JOBS__INTERVAL="15",
        CTAPROD_AGENTS__REQUEST_EXECUTOR__INTERVAL="1",
    )
    shell = Shell(
        env,
        work,
        resolvers={"<REQUEST_ID>": failed_request("LOCAL-DISK"), "<JTI>": newest_token("alice")},
    )
    with own_database(server_db_url, "docs_up", home / "unused.db") as url:
        if not url.startswith("sqlite"):
            shell.env["CTAPROD_DATABASE_URL"] = url
        log = tmp_path / "up.log"
        up = shell.start("ctaprod up --slots 4", log)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", up, log)
            ran = 0
            for block in console_blocks():
                if block.marker:
                    continue
                for command in filter(runnable, block.commands):
                    shell.run(command, f"{block.path.name}:{block.line}")
                    ran += 1
            assert ran >= 20
            # What the README promises about the outputs of job 7 and its home directory.
            listed = shell.run("ctaprod dm ls /ctao/user/a/admin/7", "check").stdout
            assert listed.split() == ["result_7.txt"]
            assert (work / "7" / "std.out").is_file()
        finally:
            stop(shell.background, home)


def test_production_quickstart_from_an_empty_database(tmp_path: Path, server_db_url: str) -> None:
    """docs/quickstart.md sections 3-5 as written: db upgrade on an empty database (the first
    admin credential, exactly once), server with 2 workers, agents, the operator commands."""
    quickstart = ROOT / "docs" / "quickstart.md"
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    toml_text = re.search(r"```toml\n(.*?)```", quickstart.read_text(), re.S)
    assert toml_text
    tomllib.loads(toml_text.group(1))  # the documented file is valid TOML
    (work / "ctaprod.toml").write_text(toml_text.group(1))
    env = clean_env(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # What differs from the documented site: where it listens and its secrets (the docs
    # leave them as "..."); the environment wins over the file, as documented.
    env.update(
        CTAPROD_HOST="127.0.0.1",
        CTAPROD_PORT=str(port),
        CTAPROD_PUBLIC_URL=url,
        CTAPROD_SECRET_KEY="docs-test-" + "s" * 40,
        CTAPROD_DATA__REQUEST_MAX_ATTEMPTS="1",
        CTAPROD_AGENTS__REQUEST_EXECUTOR__INTERVAL="1",
    )
    shell = Shell(
        env,
        work,
        resolvers={
            "<REQUEST_ID>": failed_request("CTAO-DESY-DISK"),
            "<JTI>": newest_token("alice"),
        },
        literal={PUBLIC_URL: url},
    )
    token_file = home / ".local" / "share" / "ctaprod" / "admin-token"
    with own_database(server_db_url, "docs_prod", tmp_path / "prod.db") as db_url:
        shell.env["CTAPROD_DATABASE_URL"] = db_url
        try:
            blocks = [b for b in console_blocks([quickstart]) if b.marker == "production"]
            assert len(blocks) == 4
            outputs: list[str] = []
            for block in blocks:
                for command in filter(runnable, block.commands):
                    where = f"quickstart.md:{block.line}"
                    words = _words(command)
                    if words[:2] in (["ctaprod", "server"], ["ctaprod", "agents"]):
                        log = tmp_path / f"{words[1]}.log"
                        proc = shell.start(command, log)
                        if words[1] == "server":
                            wait_healthy(url, proc, log)
                        continue
                    result = shell.run(command, where)
                    if words[0] == "ctaprod":  # (export prints the environment it set)
                        outputs.append(result.stdout + result.stderr)
                    if words[:3] == ["ctaprod", "db", "upgrade"]:
                        assert str(token_file) in result.stdout
                        assert token_file.stat().st_mode & 0o777 == 0o600
            token = token_file.read_text().strip()
            assert shell.env["CTAPROD_TOKEN"] == token
            # Printed nowhere, and given once: the server's start issued no other.
            logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
            assert token not in logs + "".join(outputs)
            with shell.client() as cli:
                assert len(cli.tokens("admin")) == 1
                assert cli.whoami().user == "admin"
            for proc in shell.background:
                assert proc.poll() is None, "server or agents stopped"
        finally:
            stop(shell.background, home)
