"""Server-side commands that finish on their own: ``db upgrade``, ``agents --once``, usage."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctaprod.cli.main import app


@pytest.fixture
def server_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SQLite state directory in the environment, as an operator would set it."""
    state = tmp_path / "state"
    monkeypatch.setenv("CTAPROD_STATE_DIR", str(state))
    monkeypatch.setenv("CTAPROD_SECRET_KEY", "cli-test-" + "k" * 40)
    monkeypatch.setenv("CTAPROD_CONFIG_DIR", str(tmp_path / "client"))
    for name in ("CTAPROD_DATABASE_URL", "CTAPROD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return state


def test_db_upgrade_is_idempotent(server_env: Path) -> None:
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "Database schema at revision" in result.stdout
    assert (server_env / "ctaprod.db").is_file()


def test_agents_once(server_env: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["agents", "--once", "--name", "stalled_jobs"])
    assert result.exit_code == 0, result.output


def test_bad_settings_are_usage_errors(
    server_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["server", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('port = "eighty"\n')
    result = runner.invoke(app, ["db", "upgrade", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid settings: port")
    replicas = runner.invoke(app, ["agents", "--replica", "2", "--replicas", "2"])
    assert replicas.exit_code == 2
