"""Tests for ctaprod.core.settings: defaults, TOML file, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ctaprod.core.settings import Settings, StorageElementConfig, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CTAPROD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_defaults(tmp_path: Path) -> None:
    s = Settings()
    assert s.state_dir == tmp_path / "xdg" / "ctaprod"
    assert s.db_url() == f"sqlite:///{tmp_path / 'xdg' / 'ctaprod' / 'ctaprod.db'}"
    assert s.server_url() == "http://127.0.0.1:8722"
    assert s.jobs.max_reschedules == 3
    assert s.jobs.stalled_policy == "reschedule"
    assert s.sandboxes.max_bytes == 10 * 1024 * 1024
    assert s.agent("stalled_jobs").interval == 60
    assert s.agent("unknown_agent").interval == 30


def test_explicit_urls() -> None:
    s = Settings(database_url="postgresql://db/x", public_url="https://prod.example.org")
    assert s.db_url() == "postgresql://db/x"
    assert s.server_url() == "https://prod.example.org"


def test_sandbox_storage_element_defaults_to_the_state_dir(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    se = s.storage_element("SandboxSE")
    assert se.plugin == "posix"
    assert se.base_path == str(tmp_path / "storage" / "SandboxSE")
    with pytest.raises(KeyError):
        s.storage_element("NoSuchSE")
    configured = Settings(storage_elements={"SandboxSE": StorageElementConfig(base_path="/x")})
    assert configured.storage_element("SandboxSE").base_path == "/x"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTAPROD_PORT", "9000")
    monkeypatch.setenv("CTAPROD_JOBS__MAX_RESCHEDULES", "5")
    monkeypatch.setenv("CTAPROD_SANDBOXES__MAX_BYTES", "1234")
    s = Settings()
    assert s.port == 9000
    assert s.jobs.max_reschedules == 5
    assert s.jobs.max_cpu_time == 7 * 86400  # untouched nested fields keep their default
    assert s.sandboxes.max_bytes == 1234


def test_toml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ctaprod.toml"
    config.write_text(
        'port = 8800\nvo = "cta"\n'
        "[jobs]\nmax_reschedules = 7\nheartbeat_interval = 5.0\n"
        '[queues.local]\nce_type = "local"\nmax_waiting = 2\n'
        '[storage_elements.DiskSE]\nbase_path = "/data"\n'
    )
    s = load_settings(config)
    assert (s.port, s.vo, s.jobs.max_reschedules, s.jobs.heartbeat_interval) == (
        8800,
        "cta",
        7,
        5.0,
    )
    assert s.queues["local"].max_waiting == 2
    assert s.storage_element("DiskSE").base_path == "/data"
    assert isinstance(s, Settings)
    # The environment wins over the file; explicit overrides win over both.
    monkeypatch.setenv("CTAPROD_PORT", "8900")
    assert load_settings(config).port == 8900
    assert load_settings(config, port=9100).port == 9100
    # $CTAPROD_CONFIG names the file when none is given.
    monkeypatch.setenv("CTAPROD_CONFIG", str(config))
    assert load_settings().vo == "cta"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "values",
    [
        {"no_such_option": 1},
        {"port": 70000},
        {"jobs": {"max_reschedules": -1}},
        {"jobs": {"stalled_policy": "ignore"}},
        {"jobs": {"heartbeat_interval": 0}},
        {"sandboxes": {"max_bytes": 0}},
    ],
)
def test_invalid_values(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate(values)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("prot = 8800\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(config)
