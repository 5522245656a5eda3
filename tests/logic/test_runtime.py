"""What pilots and job wrappers report (ctaprod.logic.runtime): registration, heartbeats,
status reports, pilot logs, and who may report on which job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from ctaprod.core.errors import (
    Conflict,
    CtaprodError,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.core.properties import TokenKind
from ctaprod.core.schemas import HeartbeatItem, StatusReport
from ctaprod.logic import jobs as L
from ctaprod.logic import queries as Q
from ctaprod.logic import runtime as R
from ctaprod.logic.job_status import Step, transition_jobs
from tests.logic.conftest import Kit

J = JobStatus


def _matched(kit: Kit, owner: Identity, **fields: Any) -> tuple[int, Identity, Any]:
    """Submit one job and match it: (job_id, job-token identity, pilot)."""
    [job_id] = kit.submit(owner, **fields)
    pilot = kit.pilot()
    m = kit.match(pilot)
    assert m.job_id == job_id
    return job_id, kit.job_ident(m), pilot


@dataclass
class Reply:
    """A reply with its refusal as a kind: "ok", or the domain error's family ("forbidden",
    "not_found", "conflict": an illegal transition is a conflict). The API maps each family to
    its HTTP status (tests/api check the numbers)."""

    job_id: int
    status: str
    error: str | None
    commands: list[str]


def _kind(err: CtaprodError | None) -> str:
    for cls, name in ((Forbidden, "forbidden"), (NotFound, "not_found"), (Conflict, "conflict")):
        if isinstance(err, cls):
            return name
    assert err is None, f"unexpected error {err!r}"
    return "ok"


def _view(replies: list[R.JobReply]) -> list[Reply]:
    return [
        Reply(r.job_id, _kind(r.error), None if r.error is None else str(r.error), r.commands)
        for r in replies
    ]


def _report(kit: Kit, ident: Identity, job_id: int, **fields: Any) -> Reply:
    [res] = _view(R.report_statuses(kit.ctx, ident, [StatusReport(job_id=job_id, **fields)]))
    return res


def _beat(kit: Kit, ident: Identity, job_id: int, **fields: Any) -> Reply:
    [res] = _view(R.heartbeats(kit.ctx, ident, [HeartbeatItem(job_id=job_id, **fields)]))
    return res


def _stall(kit: Kit, job_id: int) -> None:
    with kit.ctx.db.write() as conn:
        transition_jobs(
            kit.ctx, conn, [job_id], lambda s: [Step(J.STALLED, "No heartbeat")], "StalledJobAgent"
        )


# -- pilots ---------------------------------------------------------------------------------


def test_register_creates_a_running_pilot(kit: Kit) -> None:
    pilot = kit.pilot("LCG.Reg.org")
    with kit.ctx.db.read() as conn:
        row = kit.ctx.pilots.get(conn, pilot.pilot_id)
    assert (row["status"], row["site"], row["ce"], row["queue"]) == (
        "Running",
        "LCG.Reg.org",
        "ce.test",
        "q",
    )
    assert pilot.ident.kind is TokenKind.PILOT
    assert pilot.ident.pilot_id == pilot.pilot_id


def test_register_a_pilot_the_factory_submitted(kit: Kit) -> None:
    now = kit.ctx.clock()
    with kit.ctx.db.write() as conn:
        [pilot_id] = kit.ctx.pilots.add(
            conn,
            [
                {
                    "stamp": "factory-1",
                    "ce_ref": "local://1",
                    "ce": "ce1",
                    "queue": "q1",
                    "site": "LCG.F.org",
                    "status": "Submitted",
                    "submission_time": now,
                    "last_update": now,
                }
            ],
        )
    # The factory's pilot registers with the credential issued for its record.
    credential = kit.tokens.issue_pilot_credential(
        "pilot", "ctao_pilot", "factory-1", timedelta(hours=1)
    )
    ident = kit.tokens.verify(credential)
    reg = R.register_pilot(kit.ctx, kit.tokens, ident, "factory-1", "LCG.F.org", "ce1", "q1")
    assert reg.pilot_id == pilot_id
    with kit.ctx.db.read() as conn:
        assert kit.ctx.pilots.get(conn, pilot_id)["status"] == "Running"
    # Registering again (a restarted pilot, a replayed credential): used up.
    with pytest.raises(Forbidden, match="used already"):
        R.register_pilot(kit.ctx, kit.tokens, ident, "factory-1", "LCG.F.org", "", "")
    # A hand-start pilot token never takes over a factory pilot's record.
    with pytest.raises(Forbidden, match="existing pilot record"):
        R.register_pilot(kit.ctx, kit.tokens, kit.pilot_ident, "factory-1", "LCG.F.org", "", "")


def test_only_pilot_tokens_register(kit: Kit, alice: Identity) -> None:
    with pytest.raises(Forbidden):
        R.register_pilot(kit.ctx, kit.tokens, alice, "s", "site", "", "")
    with pytest.raises(InvalidInput):
        R.register_pilot(kit.ctx, kit.tokens, kit.pilot_ident, "x" * 65, "site", "", "")


def test_pilot_finished_and_log(kit: Kit) -> None:
    a, b = kit.pilot(), kit.pilot()
    R.save_pilot_log(kit.ctx, a.ident, a.pilot_id, "starting\n")
    R.save_pilot_log(kit.ctx, a.ident, a.pilot_id, "starting\nmore\n")
    with pytest.raises(Forbidden):
        R.save_pilot_log(kit.ctx, b.ident, a.pilot_id, "not mine")
    with pytest.raises(Forbidden):
        R.pilot_finished(kit.ctx, b.ident, a.pilot_id, True, "", None, 0)
    R.pilot_finished(kit.ctx, a.ident, a.pilot_id, False, "no more time", "final log", 3)
    with kit.ctx.db.read() as conn:
        row = kit.ctx.pilots.get(conn, a.pilot_id)
        log = kit.ctx.pilots.log(conn, a.pilot_id)
    assert (row["status"], row["status_reason"], row["jobs_done"]) == ("Failed", "no more time", 3)
    assert log == "final log"
    with pytest.raises(InvalidTransition, match=f"pilot {a.pilot_id} is Failed"):
        R.pilot_finished(kit.ctx, a.ident, a.pilot_id, True, "", None, 3)
    assert PilotStatus(row["status"]) is PilotStatus.FAILED


# -- heartbeats -----------------------------------------------------------------------------


def test_heartbeat_records_usage(kit: Kit, alice: Identity) -> None:
    job_id, job, _ = _matched(kit, alice)
    before = kit.row(job_id)["heartbeat_time"]
    res = _beat(
        kit,
        job,
        job_id,
        cpu_seconds=12.5,
        wall_seconds=20,
        rss_bytes=10**6,
        peak_rss_bytes=2 * 10**6,
    )
    assert (res.status, res.error, res.commands) == ("ok", None, [])
    row = kit.row(job_id)
    assert (row["cpu_seconds"], row["wall_seconds"], row["peak_rss_bytes"]) == (
        12.5,
        20.0,
        2 * 10**6,
    )
    assert row["heartbeat_time"] >= before
    _beat(kit, job, job_id, cpu_seconds=30, wall_seconds=40, peak_rss_bytes=3 * 10**6)
    assert kit.row(job_id)["cpu_seconds"] == 30.0


def test_heartbeat_without_figures_keeps_the_last_ones(kit: Kit, alice: Identity) -> None:
    """A keep-alive beat carrying no figures (zeros) must not wipe the job's usage."""
    job_id, job, _ = _matched(kit, alice)
    _beat(kit, job, job_id, cpu_seconds=12.5, wall_seconds=20, peak_rss_bytes=2 * 10**6)
    before = kit.row(job_id)["heartbeat_time"]
    _beat(kit, job, job_id)
    row = kit.row(job_id)
    assert (row["cpu_seconds"], row["wall_seconds"], row["peak_rss_bytes"]) == (
        12.5,
        20.0,
        2 * 10**6,
    )
    assert row["heartbeat_time"] >= before
    _beat(kit, job, job_id, wall_seconds=25)  # only some figures: the others stay
    row = kit.row(job_id)
    assert (row["cpu_seconds"], row["wall_seconds"]) == (12.5, 25.0)


def test_heartbeat_brings_a_stalled_job_back(kit: Kit, alice: Identity) -> None:
    job_id, job, _ = _matched(kit, alice)
    _report(kit, job, job_id, status="Running")
    _stall(kit, job_id)
    assert kit.row(job_id)["status"] == "Stalled"
    res = _beat(kit, job, job_id, cpu_seconds=1)
    assert res.commands == []
    assert kit.row(job_id)["status"] == "Running"
    history = Q.job_history(kit.ctx, alice, job_id)
    assert [(h.status.value, h.source) for h in history[-2:]] == [
        ("Stalled", "StalledJobAgent"),
        ("Running", "JobWrapper"),
    ]
    assert history[-1].minor_status == "Heartbeat resumed"


def test_kill_reaches_the_wrapper_through_the_heartbeat(kit: Kit, alice: Identity) -> None:
    job_id, job, pilot = _matched(kit, alice)
    _report(kit, job, job_id, status="Running")
    L.kill_jobs(kit.ctx, alice, [job_id])
    # The pilot's session hears Kill, repeated until the wrapper stops.
    res = _beat(kit, pilot.ident, job_id, cpu_seconds=5)
    assert res.commands == [R.KILL]
    assert res.error is None
    assert _beat(kit, pilot.ident, job_id).commands == [R.KILL]
    # The job's own token is void: refused (403), and the wrapper stops just the same.
    refused = _beat(kit, job, job_id)
    assert (refused.status, refused.commands) == ("forbidden", [])
    assert "being killed" in refused.error
    # The wrapper's late "Done" is refused too, with the kill repeated to the pilot.
    late = _report(kit, job, job_id, status="Done")
    assert late.status == "forbidden"
    late = _report(kit, pilot.ident, job_id, status="Done")
    assert late.status == "conflict"
    assert f"job {job_id} is Killed" in late.error
    assert late.commands == [R.KILL]
    assert kit.row(job_id)["status"] == "Killed"


def test_bulk_heartbeats_have_per_item_results(kit: Kit, alice: Identity) -> None:
    [a, b, killed, elsewhere] = kit.submit(alice, count=4)
    pilot, other = kit.pilot(), kit.pilot()
    assert [kit.match(pilot).job_id for _ in range(3)] == [a, b, killed]
    assert kit.match(other).job_id == elsewhere
    L.kill_jobs(kit.ctx, alice, [killed])
    items = [
        HeartbeatItem(job_id=a, cpu_seconds=1),
        HeartbeatItem(job_id=b, cpu_seconds=2),
        HeartbeatItem(job_id=killed),
        HeartbeatItem(job_id=elsewhere),
        HeartbeatItem(job_id=999_999),
    ]
    results = _view(R.heartbeats(kit.ctx, pilot.ident, items))
    assert [(r.job_id, r.status, r.commands) for r in results] == [
        (a, "ok", []),
        (b, "ok", []),
        (killed, "ok", [R.KILL]),
        (elsewhere, "forbidden", []),
        (999_999, "not_found", []),
    ]
    assert all(r.error for r in results[3:])
    assert (kit.row(a)["cpu_seconds"], kit.row(b)["cpu_seconds"]) == (1.0, 2.0)
    assert kit.row(elsewhere)["cpu_seconds"] is None


# -- status reports -------------------------------------------------------------------------


def test_wrapper_reports_the_lifecycle(kit: Kit, alice: Identity) -> None:
    job_id, job, pilot = _matched(kit, alice)
    assert (
        _report(
            kit,
            job,
            job_id,
            status="Running",
            minor_status="Application",
            application_status="Starting",
        ).status
        == "ok"
    )
    row = kit.row(job_id)
    assert row["start_time"] is not None
    assert (row["status"], row["minor_status"], row["application_status"]) == (
        "Running",
        "Application",
        "Starting",
    )
    _report(
        kit,
        job,
        job_id,
        application_status="Event 100 of 200",
        parameters={"HostName": "wn01", "CPUModel": "x86"},
    )
    _report(
        kit, job, job_id, application_status="Event 200 of 200", parameters={"HostName": "wn02"}
    )
    assert kit.row(job_id)["application_status"] == "Event 200 of 200"
    _report(kit, job, job_id, status="Completing", minor_status="Uploading outputs")
    _report(
        kit,
        job,
        job_id,
        status="Done",
        minor_status="Execution Complete",
        exit_code=0,
        cpu_seconds=99.0,
        wall_seconds=120.0,
        peak_rss_bytes=5000,
    )
    row = kit.row(job_id)
    assert (
        row["status"],
        row["exit_code"],
        row["cpu_seconds"],
        row["wall_seconds"],
        row["peak_rss_bytes"],
    ) == ("Done", 0, 99.0, 120.0, 5000)
    assert row["end_time"] is not None
    detail = Q.job_detail(kit.ctx, alice, job_id)
    assert detail.parameters == {"HostName": "wn02", "CPUModel": "x86"}
    history = Q.job_history(kit.ctx, alice, job_id)
    assert [(h.status.value, h.source) for h in history] == [
        ("Received", "JobManager"),
        ("Checking", "JobManager"),
        ("Waiting", "JobManager"),
        ("Matched", f"Matcher:{pilot.pilot_id}"),
        ("Running", "JobWrapper"),
        ("Running", "JobWrapper"),
        ("Running", "JobWrapper"),
        ("Completing", "JobWrapper"),
        ("Done", "JobWrapper"),
    ]
    assert [h.time for h in history] == sorted(h.time for h in history)
    # Application status changes are in the history too, in the order they happened.
    assert [h.application_status for h in history[4:7]] == [
        "Starting",
        "Event 100 of 200",
        "Event 200 of 200",
    ]
    assert history[7].minor_status == "Uploading outputs"
    assert history[-1].minor_status == "Execution Complete"
    # A finished job takes no more updates: its token is void.
    late = _report(kit, job, job_id, application_status="again")
    assert late.status == "forbidden"
    assert f"job {job_id} is Done" in late.error
    # Except the repeat of its final report (the answer to the first one was lost): ok.
    assert _report(kit, job, job_id, status="Done").status == "ok"
    assert kit.row(job_id)["application_status"] == "Event 200 of 200"


def test_completed_then_done(kit: Kit, alice: Identity) -> None:
    job_id, job, _ = _matched(kit, alice)
    _report(kit, job, job_id, status="Running")
    _report(kit, job, job_id, status="Completed", minor_status="Pending requests")
    assert _report(kit, job, job_id, application_status="requests").status == "ok"
    assert _report(kit, job, job_id, status="Done").status == "ok"
    assert kit.row(job_id)["status"] == "Done"


def test_illegal_report_names_the_current_state(kit: Kit, alice: Identity) -> None:
    job_id, job, pilot = _matched(kit, alice)
    _report(kit, job, job_id, status="Running")
    _report(kit, job, job_id, status="Failed", exit_code=3)
    res = _report(kit, job, job_id, status="Running")
    assert res.status == "forbidden"  # the job has ended: its token is void
    assert f"job {job_id} is Failed" in res.error
    assert res.commands == []
    # The state machine names the current state to the pilot, which may still report.
    res = _report(kit, pilot.ident, job_id, status="Running")
    assert res.status == "conflict"
    assert f"job {job_id} is Failed: cannot go to Running" in res.error
    assert kit.row(job_id)["exit_code"] == 3


@pytest.mark.parametrize("status", ["Waiting", "Killed", "Rescheduled", "Deleted", "Matched"])
def test_wrapper_cannot_set_server_states(kit: Kit, alice: Identity, status: str) -> None:
    job_id, job, _ = _matched(kit, alice)
    res = _report(kit, job, job_id, status=status)
    assert res.status == "forbidden"
    assert kit.row(job_id)["status"] == "Matched"


def test_bulk_status_reports(kit: Kit, alice: Identity) -> None:
    [a, b, c] = kit.submit(alice, count=3)
    pilot = kit.pilot()
    for _ in range(3):
        kit.match(pilot)
    reports = [
        StatusReport(job_id=a, status=J.RUNNING),
        StatusReport(job_id=b, status=J.DONE),
        StatusReport(job_id=b, status=J.RUNNING),  # after Done: refused
        StatusReport(job_id=c, application_status="busy"),
        StatusReport(job_id=123_456, status=J.RUNNING),
    ]
    results = _view(R.report_statuses(kit.ctx, pilot.ident, reports))
    assert [r.status for r in results] == ["ok", "ok", "conflict", "ok", "not_found"]
    assert [kit.row(j)["status"] for j in (a, b, c)] == ["Running", "Done", "Matched"]
    assert kit.row(c)["application_status"] == "busy"


def test_reports_on_one_job_in_one_call_apply_in_order(kit: Kit, alice: Identity) -> None:
    job_id, job, _ = _matched(kit, alice)
    reports = [
        StatusReport(job_id=job_id, status=J.RUNNING, application_status="Starting"),
        StatusReport(job_id=job_id, application_status="Event 1", parameters={"A": "1"}),
        StatusReport(job_id=job_id, status=J.COMPLETING, minor_status="Uploading outputs"),
        StatusReport(job_id=job_id, application_status="uploaded", parameters={"A": "2", "B": "x"}),
        StatusReport(job_id=job_id, status=J.DONE, exit_code=0, cpu_seconds=7.0),
        # Checked against the state the previous reports of the call left: the job is Done.
        StatusReport(job_id=job_id, application_status="too late"),
        StatusReport(job_id=job_id, status=J.RUNNING),
    ]
    results = _view(R.report_statuses(kit.ctx, job, reports))
    # The job is Done after the fifth: its token is void for the rest.
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "ok", "forbidden", "forbidden"]
    assert f"job {job_id} is Done" in (results[5].error or "")
    assert f"job {job_id} is Done" in (results[6].error or "")
    row = kit.row(job_id)
    assert (row["status"], row["application_status"], row["exit_code"], row["cpu_seconds"]) == (
        "Done",
        "uploaded",
        0,
        7.0,
    )
    assert row["start_time"] is not None
    assert row["end_time"] is not None
    history = Q.job_history(kit.ctx, alice, job_id)[4:]
    assert [(h.status.value, h.minor_status, h.application_status) for h in history] == [
        ("Running", "", "Starting"),
        ("Running", "", "Event 1"),
        ("Completing", "Uploading outputs", ""),
        ("Completing", "", "uploaded"),
        ("Done", "", ""),
    ]
    assert [h.time for h in history] == sorted(h.time for h in history)
    assert Q.job_detail(kit.ctx, alice, job_id).parameters == {"A": "2", "B": "x"}


def _statements(kit: Kit, call: Any) -> int:
    """How many statements ``call()`` sends to the database (an executemany counts once)."""
    from sqlalchemy import event

    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    event.listen(kit.ctx.db.engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(kit.ctx.db.engine, "before_cursor_execute", count)
    return len(sent)


def test_bulk_reports_and_heartbeats_take_a_fixed_number_of_statements(
    kit: Kit, alice: Identity
) -> None:
    ids = kit.submit(alice, count=12)
    pilot = kit.pilot()
    assert sorted(kit.match(pilot).job_id for _ in ids) == sorted(ids)
    few, many = ids[:2], ids[2:]

    def report(jobs: list[int], **fields: Any) -> Any:
        return lambda: R.report_statuses(
            kit.ctx, pilot.ident, [StatusReport(job_id=j, **fields) for j in jobs]
        )

    def beat(jobs: list[int]) -> Any:
        return lambda: R.heartbeats(
            kit.ctx, pilot.ident, [HeartbeatItem(job_id=j, cpu_seconds=1) for j in jobs]
        )

    # One SELECT of the states, then one statement per kind of write, whatever the batch size.
    start = _statements(kit, report(few, status="Running", parameters={"Host": "wn"}))
    assert _statements(kit, report(many, status="Running", parameters={"Host": "wn"})) == start
    app = _statements(kit, report(few, application_status="busy", minor_status="step 1"))
    assert app <= 4
    assert _statements(kit, report(many, application_status="busy", minor_status="step 1")) == app
    beats = _statements(kit, beat(few))
    assert beats <= 3
    assert _statements(kit, beat(many)) == beats
    assert {kit.row(j)["status"] for j in ids} == {"Running"}
    assert {kit.row(j)["application_status"] for j in ids} == {"busy"}


# -- who may report on which job ------------------------------------------------------------


def test_job_token_acts_on_its_own_job_only(kit: Kit, alice: Identity) -> None:
    job_a, token_a, _ = _matched(kit, alice)
    job_b, _, _ = _matched(kit, alice)
    assert _beat(kit, token_a, job_b).status == "forbidden"
    assert _report(kit, token_a, job_b, status="Running").status == "forbidden"
    assert kit.row(job_b)["status"] == "Matched"
    assert _beat(kit, token_a, job_a).status == "ok"


def test_old_job_token_is_refused_after_a_reschedule(kit: Kit, alice: Identity) -> None:
    job_id, old, _ = _matched(kit, alice)
    _report(kit, old, job_id, status="Running")
    L.reschedule_jobs(kit.ctx, alice, [job_id])
    kit.matcher.invalidate()
    new_pilot = kit.pilot()
    m = kit.match(new_pilot)
    assert (m.job_id, m.attempt) == (job_id, 1)
    new = kit.job_ident(m)
    beat = _beat(kit, old, job_id)
    assert beat.status == "forbidden"
    assert "superseded" in beat.error
    assert _report(kit, old, job_id, status="Done").status == "forbidden"
    assert _beat(kit, new, job_id).status == "ok"
    assert kit.row(job_id)["status"] == "Matched"
    # Even if the same pilot gets the job back, the old attempt's token stays refused.
    L.reschedule_jobs(kit.ctx, alice, [job_id])
    kit.matcher.invalidate()
    assert kit.match(new_pilot).attempt == 2
    assert _beat(kit, new, job_id).status == "forbidden"


def test_pilot_session_acts_on_its_own_jobs_only(kit: Kit, alice: Identity) -> None:
    job_b, _, pilot_b = _matched(kit, alice)
    pilot_a = kit.pilot()
    assert _beat(kit, pilot_a.ident, job_b).status == "forbidden"
    assert _report(kit, pilot_a.ident, job_b, status="Running").status == "forbidden"
    assert _beat(kit, pilot_b.ident, job_b).status == "ok"


def test_user_and_plain_pilot_tokens_cannot_report(kit: Kit, alice: Identity) -> None:
    job_id, _, _ = _matched(kit, alice)
    for ident in (alice, kit.pilot_ident):
        assert _beat(kit, ident, job_id).status == "forbidden"
        assert _report(kit, ident, job_id, status="Running").status == "forbidden"
    assert kit.row(job_id)["status"] == "Matched"
