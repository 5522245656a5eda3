"""``ctaprod request list | show | retry | cancel`` against a live server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.core.requests import RequestSpec
from ctaprod.logic import requests as L
from ctaprod.logic.request_claims import claim_due
from tests.cli.conftest import Cli

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))


def test_request_commands(cli: Cli) -> None:
    ctx = cli.services.ctx
    ctx.settings.data.request_max_attempts = 1
    spec = RequestSpec.model_validate(
        {
            "name": "failover-1",
            "operations": [
                {"type": "RemoveFile", "files": [{"lfn": "/vo/gone"}]},
                {
                    "type": "RegisterReplica",
                    "arguments": {"se": "NOPE"},
                    "files": [{"lfn": "/vo/x"}],
                },
            ],
        }
    )
    rid = L.create_request(ctx, ADMIN, spec)
    listed = cli("request", "list")
    assert "failover-1" in listed.stdout
    assert "Waiting" in listed.stdout
    assert "1 request" in listed.stderr

    assert L.execute_due(ctx).failed == 1  # RegisterReplica on an unknown SE
    out = cli("request", "list", "--status", "failed").stdout
    assert f"{rid}" in out
    assert "Failed" in out
    assert "0 requests" in cli("request", "list", "--status", "Done").stderr
    out = cli("request", "show", str(rid)).stdout
    for text in ("failover-1", "RemoveFile", "RegisterReplica", "se=NOPE", "/vo/gone", "/vo/x"):
        assert text in out, text
    assert "NOPE" in L.get_request(ctx, ADMIN, rid).error

    assert f"Request {rid} is Waiting" in cli("request", "retry", str(rid)).stdout
    assert f"Request {rid} is Canceled" in cli("request", "cancel", str(rid)).stdout
    err = cli("request", "cancel", str(rid), code=1).stderr
    assert f"request {rid} is Canceled: cannot go to Canceled" in err
    err = cli("request", "retry", str(rid), code=1).stderr
    assert f"request {rid} is Canceled: cannot go to Waiting" in err


def test_request_retry_refuses_a_request_a_live_executor_holds(cli: Cli) -> None:
    ctx = cli.services.ctx
    spec = RequestSpec.model_validate(
        {"operations": [{"type": "RemoveFile", "files": [{"lfn": "/vo/gone"}]}]}
    )
    rid = L.create_request(ctx, ADMIN, spec)
    now = datetime.now(UTC)
    with ctx.db.write() as conn:
        claim_due(ctx, conn, now, 10, "w#1", lease_until=now + timedelta(seconds=45))
    err = cli("request", "retry", str(rid), code=1).stderr
    assert "executor w#1 holds it, its lease runs until" in err
    assert "Lease until" in cli("request", "show", str(rid)).stdout
    assert "no request 999" in cli("request", "show", "999", code=1).stderr
