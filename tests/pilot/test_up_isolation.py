"""What `ctaprod up` does for isolation besides the sandbox: modes, work directory, warning."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ctaprod.core.settings import Settings
from ctaprod.pilot import sandbox as sb
from ctaprod.server.commands import embedded_settings, payload_isolation_warning, pilot_work_root
from ctaprod.server.services import secure_state_dir


def test_secure_state_dir_repairs_a_world_readable_install(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    for name in ("secret.key", "admin-token", "ctaprod.db", "ctaprod.db-wal"):
        (state / name).write_text("x")
        (state / name).chmod(0o644)
    secure_state_dir(Settings(state_dir=state, extensions=[]))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("secret.key", "admin-token", "ctaprod.db", "ctaprod.db-wal"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_up_pilots_work_outside_the_state_dir(tmp_path: Path) -> None:
    settings = embedded_settings(Settings(state_dir=tmp_path / "state", extensions=[]), 2)
    work = Path(settings.queues["local"].options["pilot_work_dir"])
    assert work == tmp_path / "state-work" / "local" == pilot_work_root(settings) / "local"
    assert not work.is_relative_to(settings.state_dir)


def test_up_warns_when_payloads_cannot_be_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    sb.bwrap_works.cache_clear()
    try:
        warning = payload_isolation_warning()
    finally:
        monkeypatch.undo()
        sb.bwrap_works.cache_clear()
    assert warning is not None
    assert "payloads are NOT isolated (bwrap not found on PATH)" in warning
