"""Job submission and user control (ctaprod.logic.jobs) on the real test database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ctaprod.core.archive import make_archive
from ctaprod.core.errors import Forbidden, InvalidInput, InvalidTransition, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.jobdesc import expand
from ctaprod.core.jobs import JobDescription
from ctaprod.core.properties import TokenKind
from ctaprod.db.tables import job_history, sandbox_refs, task_queues, tq_jobs
from ctaprod.logic import jobs as L
from ctaprod.logic import queries as Q
from ctaprod.logic import sandboxes as S
from tests.logic.conftest import Kit, user_identity

J_ADMIN = frozenset({"NormalUser", "JobAdministrator"})


def _count(kit: Kit, table: object) -> int:
    with kit.ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _sandbox(kit: Kit, ident: Identity, tmp_path: Path, content: str) -> str:
    src = tmp_path / f"in-{content}"
    src.mkdir()
    (src / "payload.sh").write_text(f"echo {content}\n")
    archive = tmp_path / f"{content}.tar.gz"
    sha = make_archive([src / "payload.sh"], archive)
    S.store_sandbox(kit.ctx, ident, sha, archive.stat().st_size, archive)
    return sha


def test_submit_stores_waiting_jobs(kit: Kit, alice: Identity) -> None:
    ids = kit.submit(
        alice,
        JobName="j%s",
        Parameters=3,
        ParameterStep=1,
        Site="LCG.A.fr",
        Priority=4,
        JobGroup="grp",
        JobType="MCSimulation",
        CPUTime=500,
    )
    assert len(ids) == 3
    assert ids == sorted(ids)
    for n, job_id in enumerate(ids, start=1):
        row = kit.row(job_id)
        assert row["status"] == "Waiting"
        assert (row["owner"], row["owner_group"]) == ("alice", "ctao_user")
        assert (row["job_name"], row["job_group"], row["job_type"]) == (
            f"j{n}",
            "grp",
            "MCSimulation",
        )
        assert (row["site"], row["priority"], row["cpu_time"]) == ("LCG.A.fr", 4, 500)
        assert row["reschedule_count"] == 0
        detail = Q.job_detail(kit.ctx, alice, job_id)
        assert detail.description.job_name == f"j{n}"
        assert "JobName" in detail.jdl
        history = Q.job_history(kit.ctx, alice, job_id)
        assert [h.status.value for h in history] == ["Received", "Checking", "Waiting"]
        assert {h.source for h in history} == {"JobManager"}
    # One task queue for the three identical jobs, all three queued in it.
    assert _count(kit, task_queues) == 1
    assert _count(kit, tq_jobs) == 3


def test_site_column(kit: Kit, alice: Identity) -> None:
    [one] = kit.submit(alice, Site="A")
    [two] = kit.submit(alice, Site=["A", "B"])
    [anywhere] = kit.submit(alice)
    assert [kit.row(j)["site"] for j in (one, two, anywhere)] == ["A", "ANY", "ANY"]


def test_different_requirements_make_different_queues(
    kit: Kit, alice: Identity, bob: Identity
) -> None:
    kit.submit(alice)
    kit.submit(alice, Tags=["GPU"])
    kit.submit(bob)
    kit.submit(alice, CPUTime=100)  # a different CPU-time segment
    kit.submit(alice)
    assert _count(kit, task_queues) == 4
    assert _count(kit, tq_jobs) == 5


@pytest.mark.parametrize("kind", [TokenKind.PILOT, TokenKind.JOB])
def test_only_user_tokens_submit(kit: Kit, kind: TokenKind) -> None:
    ident = Identity("pilot", "ctao_pilot", kind, frozenset({"GenericPilot", "NormalUser"}))
    with pytest.raises(Forbidden):
        L.submit_jobs(kit.ctx, ident, expand({"Executable": "x"}, kit.ctx.limits))
    assert kit.count_jobs() == 0


def test_submission_needs_a_user_property(kit: Kit) -> None:
    ident = user_identity("op", "ops", frozenset({"Operator"}))
    with pytest.raises(Forbidden, match="NormalUser or ProductionManagement"):
        L.submit_jobs(kit.ctx, ident, expand({"Executable": "x"}, kit.ctx.limits))
    prod = user_identity("prod", "ctao_prod", frozenset({"ProductionManagement"}))
    assert (
        len(L.submit_jobs(kit.ctx, prod, expand({"Executable": "x"}, kit.ctx.limits)).job_ids) == 1
    )


def test_local_input_sandbox_files_are_refused(kit: Kit, alice: Identity) -> None:
    descs = [
        JobDescription(Executable="x"),
        JobDescription(Executable="x", InputSandbox=["testJob.sh"]),
    ]
    with pytest.raises(
        InvalidInput, match=r"job 1: InputSandbox file 'testJob\.sh' was not uploaded"
    ):
        L.submit_jobs(kit.ctx, alice, descs)
    assert kit.count_jobs() == 0


def test_input_sandboxes_are_attached(kit: Kit, alice: Identity, tmp_path: Path) -> None:
    sha = _sandbox(kit, alice, tmp_path, "a")
    register_lfn(kit, "/vo/x")  # LFN sandboxes must be in the catalog
    [job_id] = kit.submit(alice, InputSandbox=[f"SB:{sha}", "LFN:/vo/x"])
    with kit.ctx.db.read() as conn:
        rows = kit.ctx.sandboxes.of_job(conn, job_id, "input")
    assert [r["sha256"] for r in rows] == [sha]


def test_another_users_sandbox_is_refused(
    kit: Kit, alice: Identity, bob: Identity, tmp_path: Path
) -> None:
    sha = _sandbox(kit, alice, tmp_path, "secret")
    with pytest.raises(NotFound, match=f"SB:{sha} is not among your uploads"):
        kit.submit(bob, InputSandbox=[f"SB:{sha}"])
    assert kit.count_jobs() == 0
    # Once bob uploads the same content himself, he may use it.
    _sandbox(kit, bob, tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path, "secret")
    assert len(kit.submit(bob, InputSandbox=[f"SB:{sha}"])) == 1


def test_bulk_submission_is_all_or_nothing(kit: Kit, alice: Identity, tmp_path: Path) -> None:
    kit.submit(alice)
    before = (
        kit.count_jobs(),
        _count(kit, job_history),
        _count(kit, tq_jobs),
        _count(kit, sandbox_refs),
    )
    good = _sandbox(kit, alice, tmp_path, "good")
    descs = [JobDescription(Executable="x", InputSandbox=[f"SB:{good}"])] * 5
    descs.append(JobDescription(Executable="x", InputSandbox=["SB:" + "0" * 64]))
    with pytest.raises(NotFound):
        L.submit_jobs(kit.ctx, alice, descs)
    after = (
        kit.count_jobs(),
        _count(kit, job_history),
        _count(kit, tq_jobs),
        _count(kit, sandbox_refs),
    )
    assert after == before


def test_concurrent_submissions_with_new_requirements(kit: Kit, alice: Identity) -> None:
    """Writers racing to create the same task queue all succeed (resolved in the DB)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def submit(n: int) -> None:
        try:
            barrier.wait()
            for k in range(5):
                L.submit_jobs(kit.ctx, alice, [JobDescription(Executable="x", Tags=[f"T{k}"])] * 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert kit.count_jobs() == 60
    assert _count(kit, task_queues) == 5
    assert _count(kit, tq_jobs) == 60


# -- kill, reschedule, delete ---------------------------------------------------------------


def test_kill_waiting_job(kit: Kit, alice: Identity) -> None:
    [job_id, other] = kit.submit(alice, count=2)
    L.kill_jobs(kit.ctx, alice, [job_id])
    assert kit.state(job_id).status.value == "Killed"
    assert not kit.state(job_id).kill_requested  # nothing runs: no kill command needed
    # The killed job left its task queue: a pilot only gets the other one.
    assert kit.drain(kit.pilot()) == [other]
    history = Q.job_history(kit.ctx, alice, job_id)
    assert (history[-1].status.value, history[-1].source) == ("Killed", "user:alice")


def test_kill_matched_job_requests_the_kill(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice)
    kit.match(kit.pilot())
    L.kill_jobs(kit.ctx, alice, [job_id])
    state = kit.state(job_id)
    assert state.status.value == "Killed"
    assert state.kill_requested


def test_kill_is_refused_from_a_final_state(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice)
    L.kill_jobs(kit.ctx, alice, [job_id])
    with pytest.raises(InvalidTransition, match=f"job {job_id} is Killed") as info:
        L.kill_jobs(kit.ctx, alice, [job_id])
    assert info.value.current == "Killed"


def test_kill_many_is_all_or_nothing(kit: Kit, alice: Identity) -> None:
    [a, b, c] = kit.submit(alice, count=3)
    L.kill_jobs(kit.ctx, alice, [b])
    with pytest.raises(InvalidTransition):
        L.kill_jobs(kit.ctx, alice, [a, b, c])
    assert [kit.state(j).status.value for j in (a, b, c)] == ["Waiting", "Killed", "Waiting"]
    with pytest.raises(NotFound):
        L.kill_jobs(kit.ctx, alice, [a, 999_999])
    assert kit.state(a).status.value == "Waiting"


def test_users_act_on_their_own_jobs_only(kit: Kit, alice: Identity, bob: Identity) -> None:
    [job_id] = kit.submit(alice)
    for action in (L.kill_jobs, L.reschedule_jobs, L.delete_jobs):
        with pytest.raises(NotFound):
            action(kit.ctx, bob, [job_id])  # type: ignore[operator]
    with pytest.raises(NotFound):
        Q.job_detail(kit.ctx, bob, job_id)
    assert kit.state(job_id).status.value == "Waiting"
    admin = user_identity("carol", "admins", J_ADMIN)
    L.kill_jobs(kit.ctx, admin, [job_id])
    assert kit.state(job_id).status.value == "Killed"
    assert Q.job_history(kit.ctx, alice, job_id)[-1].source == "user:carol"


def test_reschedule_of_a_waiting_job_is_refused(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice)
    with pytest.raises(
        InvalidTransition, match=f"job {job_id} is Waiting: cannot go to Rescheduled"
    ):
        L.reschedule_jobs(kit.ctx, alice, [job_id])


def test_reschedule_returns_the_job_to_its_queue(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice, Site="LCG.Test.org")
    pilot = kit.pilot()
    assert kit.match(pilot).job_id == job_id
    assert kit.row(job_id)["site"] == "LCG.Test.org"
    assert L.reschedule_jobs(kit.ctx, alice, [job_id]) == {job_id: L.J.WAITING}
    row = kit.row(job_id)
    assert (row["status"], row["reschedule_count"], row["pilot_id"]) == ("Waiting", 1, None)
    assert row["site"] == "LCG.Test.org"  # the job still wants its one site
    statuses = [h.status.value for h in Q.job_history(kit.ctx, alice, job_id)]
    assert statuses[-3:] == ["Matched", "Rescheduled", "Waiting"]
    kit.matcher.invalidate()
    again = kit.match(pilot)
    assert again.job_id == job_id
    assert again.attempt == 1


def test_reschedule_limit_fails_the_job(kit: Kit, alice: Identity) -> None:
    kit.ctx.settings.jobs.max_reschedules = 2
    [job_id] = kit.submit(alice)
    pilot = kit.pilot()
    for n in range(2):
        kit.matcher.invalidate()
        assert kit.match(pilot).job_id == job_id
        assert L.reschedule_jobs(kit.ctx, alice, [job_id]) == {job_id: L.J.WAITING}
        assert kit.row(job_id)["reschedule_count"] == n + 1
    kit.matcher.invalidate()
    kit.match(pilot)
    assert L.reschedule_jobs(kit.ctx, alice, [job_id]) == {job_id: L.J.FAILED}
    row = kit.row(job_id)
    assert row["status"] == "Failed"
    assert "Maximum of 2 reschedulings" in row["minor_status"]
    kit.matcher.invalidate()
    assert kit.match(pilot) is None


def test_delete(kit: Kit, alice: Identity) -> None:
    ids = kit.submit(alice, count=2)
    matched = kit.match(kit.pilot()).job_id
    [waiting] = [j for j in ids if j != matched]
    L.delete_jobs(kit.ctx, alice, [waiting, matched])
    for job_id in (waiting, matched):
        assert kit.state(job_id).status.value == "Deleted"
        statuses = [h.status.value for h in Q.job_history(kit.ctx, alice, job_id)]
        assert statuses[-2:] == ["Killed", "Deleted"]
    assert kit.state(matched).kill_requested
    with pytest.raises(InvalidTransition, match="is Deleted"):
        L.delete_jobs(kit.ctx, alice, [waiting])
    assert _count(kit, tq_jobs) == 0


def test_reschedule_of_a_finished_job_past_the_limit(kit: Kit, alice: Identity) -> None:
    kit.ctx.settings.jobs.max_reschedules = 1
    [job_id] = kit.submit(alice)
    L.kill_jobs(kit.ctx, alice, [job_id])
    assert L.reschedule_jobs(kit.ctx, alice, [job_id]) == {job_id: L.J.WAITING}
    L.kill_jobs(kit.ctx, alice, [job_id])
    with pytest.raises(
        InvalidTransition,
        match=f"job {job_id} is Killed: cannot go to Rescheduled .the limit of 1 reschedulings",
    ):
        L.reschedule_jobs(kit.ctx, alice, [job_id])
    assert kit.state(job_id).status.value == "Killed"
    # The agents' lenient form leaves it alone.
    assert L.reschedule_jobs(kit.ctx, None, [job_id], "stalled", strict=False) == {}
    assert kit.state(job_id).status.value == "Killed"


def register_lfn(kit: Kit, lfn: str) -> None:
    """A catalog entry (replica on the embedded SE, not verified)."""
    from ctaprod.core.catalog import FileRegistration
    from ctaprod.logic import catalog

    admin = user_identity("admin", "ctao_admin", frozenset({"Admin"}))
    reg = FileRegistration(lfn=lfn, size=1, checksum="1", se="LOCAL-DISK")
    catalog.register_files(kit.ctx, admin, [reg], verify=False)
