"""Fixtures of the CLI tests: the ``ctaprod`` app run by CliRunner against a live server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ctaprod.cli.main import app


@dataclass
class Cli:
    """Runs ``ctaprod ARGS`` in-process; ``code`` is the expected exit code (None: any)."""

    runner: CliRunner
    url: str
    admin_token: str
    pilot_token: str
    services: Any
    config_dir: Path

    def __call__(self, *args: str, code: int | None = 0) -> Result:
        result = self.runner.invoke(app, list(args))
        if code is not None:
            assert result.exit_code == code, (
                f"ctaprod {' '.join(args)} exited {result.exit_code}, not {code}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
                f"exception: {result.exception!r}"
            )
        assert "Traceback" not in result.output
        return result


@pytest.fixture
def cli(live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    config_dir = tmp_path / "client-config"
    monkeypatch.setenv("CTAPROD_URL", live_server.url)
    monkeypatch.setenv("CTAPROD_TOKEN", live_server.admin_token)
    monkeypatch.setenv("CTAPROD_CONFIG_DIR", str(config_dir))
    # Wide tables: cells are not folded, so that the tests can look for whole values.
    monkeypatch.setenv("COLUMNS", "250")
    return Cli(
        CliRunner(),
        live_server.url,
        live_server.admin_token,
        live_server.pilot_token,
        live_server.services,
        config_dir,
    )
