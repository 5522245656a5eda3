"""SE management on the real test database: configuration, bans, history, permissions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.errors import Forbidden, InvalidInput, NotFound, Unavailable
from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.core.settings import Settings, StorageElementConfig
from ctaprod.logic import storage as S
from ctaprod.logic.context import Context
from tests.logic.conftest import user_identity

OPERATOR = user_identity("olga", "ctao_ops", frozenset({"Operator"}))
ADMIN = user_identity("ada", "ctao_admin", frozenset({"Admin"}))


@pytest.fixture
def ctx(services: Any) -> Context:
    ctx: Context = services.ctx
    return ctx


def test_embedded_defaults(ctx: Context) -> None:
    ses = {se.name: se for se in S.elements(ctx)}
    assert list(ses) == ["LOCAL-DISK", "LOCAL-FAILOVER"]
    disk = ses["LOCAL-DISK"]
    assert disk.plugin == "posix"
    assert disk.site == "LOCAL.localhost.org"
    assert disk.read
    assert disk.write
    assert disk.read_reason == ""
    assert Path(disk.base_path) == ctx.settings.state_dir / "storage" / "LOCAL-DISK"
    assert ses["LOCAL-FAILOVER"].groups == ["failover"]
    assert S.group(ctx, "failover") == ["LOCAL-FAILOVER"]
    assert S.group(ctx, "nope") == []
    assert S.default_se(ctx) == "LOCAL-DISK"
    assert S.ses_at_site(ctx, "LOCAL.localhost.org") == ["LOCAL-DISK", "LOCAL-FAILOVER"]
    assert S.ses_at_site(ctx, "LCG.Other.org") == []
    # The plugin is built from the same configuration; the sandbox SE is not a data SE.
    assert ctx.storage("LOCAL-DISK").name == "LOCAL-DISK"
    assert ctx.settings.storage_element("SandboxSE").plugin == "posix"
    with pytest.raises(KeyError):
        ctx.settings.storage_element("NOPE")


def test_configured_elements_replace_the_defaults(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        storage_elements={
            "CTAO-XRD": StorageElementConfig(
                plugin="xrootd",
                endpoint="root://x:1094",
                site="LCG.A.org",
                options={"secret_key": "s3cr3t", "timeout": 5},
            ),
            "CTAO-RO": StorageElementConfig(base_path="/x", site="LCG.B.org", write=False),
            "SandboxSE": StorageElementConfig(base_path="/sb"),
        },
    )
    assert list(settings.data_storage_elements()) == ["CTAO-XRD", "CTAO-RO"]
    assert settings.data_se_groups() == {}
    assert settings.default_data_se() == "CTAO-XRD"
    with pytest.raises(KeyError):
        settings.storage_element("LOCAL-DISK")


def test_ban_allow_and_history(ctx: Context) -> None:
    info = S.ban(ctx, OPERATOR, "LOCAL-DISK", "write", "disk full")
    assert (info.read, info.write, info.write_reason) == (True, False, "disk full")
    S.check_access(ctx, "LOCAL-DISK", "read")
    with pytest.raises(Unavailable, match="banned for write: disk full") as caught:
        S.check_access(ctx, "LOCAL-DISK", "write")
    assert caught.value.detail["reason"] == "disk full"
    S.ban(ctx, ADMIN, "LOCAL-DISK", "both", "downtime")
    ok, refused = S.usable(ctx, ["LOCAL-DISK", "LOCAL-FAILOVER", "NOPE"], "read")
    assert ok == ["LOCAL-FAILOVER"]
    assert refused == {
        "LOCAL-DISK": "banned for read: downtime",
        "NOPE": "unknown storage element",
    }
    info = S.allow(ctx, OPERATOR, "LOCAL-DISK", "read", "back")
    assert (info.read, info.write, info.write_reason) == (True, False, "downtime")
    info = S.allow(ctx, OPERATOR, "LOCAL-DISK", "both")
    assert info.read
    assert info.write
    entries = S.history(ctx, "LOCAL-DISK")
    assert [(e.access, e.allowed, e.reason, e.author) for e in entries] == [
        ("write", True, "", "olga"),
        ("read", True, "", "olga"),
        ("read", True, "back", "olga"),
        ("write", False, "downtime", "ada"),
        ("read", False, "downtime", "ada"),
        ("write", False, "disk full", "olga"),
    ]
    assert all(e.time.tzinfo is not None for e in entries)
    detail = S.show(ctx, "LOCAL-DISK")
    assert detail.element.name == "LOCAL-DISK"
    assert len(detail.history) == 6
    assert S.history(ctx, "LOCAL-FAILOVER") == []


def test_ban_refusals(ctx: Context) -> None:
    with pytest.raises(Forbidden, match="Operator or Admin"):
        S.ban(ctx, user_identity("alice"), "LOCAL-DISK", "both", "mine")
    with pytest.raises(NotFound, match="NOPE"):
        S.ban(ctx, OPERATOR, "NOPE", "both", "x")
    with pytest.raises(InvalidInput, match="needs a reason"):
        S.ban(ctx, OPERATOR, "LOCAL-DISK", "read", "  ")
    with pytest.raises(InvalidInput, match="access"):
        S.ban(ctx, OPERATOR, "LOCAL-DISK", "all", "x")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        S.check_access(ctx, "NOPE", "read")
    with pytest.raises(NotFound):
        S.history(ctx, "NOPE")
    assert S.history(ctx, "LOCAL-DISK") == []
    assert S.element(ctx, "LOCAL-DISK").write


def test_configured_access_counts_as_banned(tmp_path: Path, db_url: str) -> None:
    from ctaprod.server.services import build_services

    settings = Settings(
        state_dir=tmp_path,
        database_url=db_url,
        secret_key="k" * 48,
        storage_elements={
            "RO": StorageElementConfig(base_path=str(tmp_path / "ro"), write=False),
            "HIDDEN": StorageElementConfig(
                base_path=str(tmp_path / "h"), options={"access_key": "AK", "region": "eu"}
            ),
        },
    )
    svc = build_services(settings, migrate_db=False)
    try:
        with pytest.raises(Unavailable, match="disabled in the configuration"):
            S.check_access(svc.ctx, "RO", "write")
        S.allow(svc.ctx, OPERATOR, "RO", "both")  # a run-time allow cannot override it
        assert not S.element(svc.ctx, "RO").write
        hidden = {se.name: se for se in S.elements(svc.ctx)}["HIDDEN"]
        assert hidden.options == {"access_key": "***", "region": "eu"}
        shown = {se.name: se for se in S.elements(svc.ctx, secrets=True)}["HIDDEN"]
        assert shown.options["access_key"] == "AK"
    finally:
        svc.ctx.db.dispose()


def test_who_sees_secrets() -> None:
    assert S.may_see_secrets(ADMIN)
    assert not S.may_see_secrets(OPERATOR)
    # Pilots never; a job token only for its own job's SEs (S.secret_ses, tests/api).
    assert not S.may_see_secrets(Identity("p", "ctao_pilot", TokenKind.PILOT))
    assert not S.may_see_secrets(Identity("u", "g", TokenKind.JOB, job_id=3))
