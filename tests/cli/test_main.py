"""The ``ctaprod`` entry point: global options, error reporting, the light (worker) install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.conftest import free_port

# Makes the server dependencies unimportable, as on a worker node with the light install.
BLOCK_SERVER_DEPS = """
import sys

BLOCKED = {"sqlalchemy", "fastapi", "uvicorn", "alembic", "starlette"}


class _NoServerDeps:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoServerDeps())
"""


def test_whoami(cli: Cli) -> None:
    out = cli("whoami").stdout
    for word in ("admin", "ctao_admin", "user", "Admin", "JobAdministrator"):
        assert word in out


def test_url_and_token_options_win_over_the_environment(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTAPROD_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CTAPROD_TOKEN", "not-a-token")
    out = cli("--url", cli.url, "--token", cli.pilot_token, "whoami").stdout
    assert "ctao_pilot" in out
    assert "GenericPilot" in out


def test_bad_token_is_a_one_line_api_error(cli: Cli) -> None:
    result = cli("--token", "garbage", "whoami", code=1)
    assert result.stderr.startswith("Error: ")
    assert "(HTTP 401)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_server_exits_3(cli: Cli) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = cli("--url", closed, "job", "list", code=3)
    assert f"cannot reach {closed}" in result.stderr
    assert result.stderr.startswith("Error: ")


def test_help_and_version(cli: Cli) -> None:
    top = cli("--help").stdout
    for command in ("whoami", "job", "admin", "pilot", "server", "agents", "up", "db"):
        assert command in top
    assert "kill" in cli("job", "--help").stdout
    assert "ctaprod 0." in cli("--version").stdout
    assert cli(code=2).exit_code == 2  # no command: help, usage error
    assert "No such command" in cli("jbo", code=2).stderr


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CTAPROD_CONFIG_DIR=str(tmp_path / "cfg"), COLUMNS="200")
    env.pop("CTAPROD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-c", BLOCK_SERVER_DEPS + code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_imports_without_server_dependencies(tmp_path: Path) -> None:
    proc = _python(
        "import ctaprod.cli.main\n"
        "loaded = sorted(m for m in BLOCKED if m in sys.modules)\n"
        "assert not loaded, loaded\n"
        "assert 'ctaprod.server' not in sys.modules\n"
        "sys.argv = ['ctaprod', '--help']\n"
        "ctaprod.cli.main.main()\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "job" in proc.stdout


def test_server_commands_explain_the_missing_install(tmp_path: Path) -> None:
    proc = _python(
        "from ctaprod.cli.main import main\nsys.argv = ['ctaprod', 'server']\nmain()\n", tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "this command needs the server install: pip install 'ctaprod[server]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ctaprod"
    if not script.exists():
        pytest.skip("the ctaprod script is not installed in this environment")
    proc = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
