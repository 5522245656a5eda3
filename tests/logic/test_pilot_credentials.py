"""One credential per pilot: single-use, bound to its record, exchanged for a session token
that acts for that pilot only and dies with it."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from ctaprod.core.errors import CtaprodError, Forbidden, Unauthorized
from ctaprod.core.identity import Identity
from ctaprod.logic import runtime as R
from ctaprod.logic.auth import TokenService
from tests.logic.conftest import Kit


def _submitted(kit: Kit, stamp: str) -> int:
    """A pilot record as the factory writes it at submission."""
    now = kit.ctx.clock()
    with kit.ctx.db.write() as conn:
        [pilot_id] = kit.ctx.pilots.add(
            conn,
            [
                {
                    "stamp": stamp,
                    "ce_ref": stamp,
                    "ce": "ce1",
                    "queue": "q1",
                    "site": "LCG.F.org",
                    "status": "Submitted",
                    "submission_time": now,
                    "last_update": now,
                }
            ],
        )
    return int(pilot_id)


def _credential(kit: Kit, stamp: str, hours: float = 1.0) -> str:
    return kit.tokens.issue_pilot_credential("pilot", "ctao_pilot", stamp, timedelta(hours=hours))


def _row(kit: Kit, pilot_id: int) -> Any:
    with kit.ctx.db.read() as conn:
        return kit.ctx.pilots.get(conn, pilot_id)


def _register(kit: Kit, ident: Identity, stamp: str) -> R.Registration:
    return R.register_pilot(kit.ctx, kit.tokens, ident, stamp, "LCG.F.org", "ce1", "q1")


def test_a_credential_registers_its_own_record_once(kit: Kit) -> None:
    mine, other = _submitted(kit, "p-mine"), _submitted(kit, "p-other")
    cred = kit.tokens.verify(_credential(kit, "p-mine"))
    assert (cred.stamp, cred.registration_only) == ("p-mine", True)
    # Not for another pilot's record: refused, noted on both records.
    with pytest.raises(Forbidden, match="credential of pilot p-mine used for p-other"):
        _register(kit, cred, "p-other")
    assert "p-other" in _row(kit, mine)["registration_refused"]
    assert _row(kit, other)["status"] == "Submitted"
    assert _row(kit, other)["registration_refused"] is not None
    reg = _register(kit, cred, "p-mine")
    assert reg.pilot_id == mine
    row = _row(kit, mine)
    assert (row["status"], row["registered_at"] is not None) == ("Running", True)
    # A replay (a stolen copy, a restarted pilot): used up, refused and noted.
    with pytest.raises(Forbidden, match="used already"):
        _register(kit, cred, "p-mine")
    assert "used already" in _row(kit, mine)["registration_refused"]
    # The session acts for its pilot, not for registering more.
    session = kit.tokens.verify(reg.session_token)
    assert (session.pilot_id, session.registration_only) == (mine, False)
    with pytest.raises(Forbidden):
        _register(kit, session, "p-new")


def test_two_registrations_at_once_one_wins(kit: Kit) -> None:
    pilot_id = _submitted(kit, "p-race")
    cred = kit.tokens.verify(_credential(kit, "p-race"))
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def register() -> None:
        barrier.wait()
        try:
            outcomes.append(_register(kit, cred, "p-race").pilot_id)
        except CtaprodError as exc:
            outcomes.append(type(exc))

    threads = [threading.Thread(target=register) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == sorted([pilot_id, Forbidden], key=str)


def test_an_expired_credential_is_refused(kit: Kit) -> None:
    _submitted(kit, "p-late")
    with pytest.raises(Unauthorized, match="expired"):
        kit.tokens.verify(_credential(kit, "p-late", hours=-1))


def test_a_credential_is_good_for_registering_only(kit: Kit, alice: Identity) -> None:
    _submitted(kit, "p-reg")
    cred = kit.tokens.verify(_credential(kit, "p-reg"))
    kit.submit(alice)
    pilot = kit.pilot()
    with pytest.raises(Forbidden, match="session token"):
        kit.matcher.match(cred, pilot.pilot_id, pilot.resource())
    with pytest.raises(Forbidden):
        R.pilot_finished(kit.ctx, cred, pilot.pilot_id, True, "x", None, 0)


def test_a_session_dies_with_its_pilot(kit: Kit) -> None:
    _submitted(kit, "p-end")
    reg = _register(kit, kit.tokens.verify(_credential(kit, "p-end")), "p-end")
    session = kit.tokens.verify(reg.session_token)
    R.pilot_finished(kit.ctx, session, reg.pilot_id, True, "no more jobs", None, 0)
    # Another server process (no cached verification): refused at once.
    other = TokenService(kit.ctx, kit.tokens.secret, cache_seconds=0)
    with pytest.raises(Unauthorized, match="is Done"):
        other.verify(reg.session_token)


def test_a_hand_start_token_registers_new_records_only(kit: Kit) -> None:
    _submitted(kit, "p-factory")
    with pytest.raises(Forbidden, match="existing pilot record"):
        _register(kit, kit.pilot_ident, "p-factory")
    reg = _register(kit, kit.pilot_ident, "p-by-hand")
    assert _row(kit, reg.pilot_id)["status"] == "Running"
    # Revoking it ends its sessions (as before).
    session = reg.session_token
    kit.tokens.revoke(kit.pilot_ident.jti)
    other = TokenService(kit.ctx, kit.tokens.secret, cache_seconds=0)
    with pytest.raises(Unauthorized, match="revoked"):
        other.verify(session)
