"""Transformation use cases on the real test database: create (existing input attached in
bulk), bad input refused before anything is written, dry run, state changes through the
machine, extend and re-scan, and the task door moving files on."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.core.statemachine import Change
from ctaprod.core.trans_states import TaskStatus, TransFileStatus
from ctaprod.db.tables import trans_files, transformations
from ctaprod.db.transformations import NewTask
from ctaprod.logic import metadata as M
from ctaprod.logic import transformations as T
from ctaprod.logic.trans_states import change_tasks, change_trans_files
from tests.db.test_metadata_tree import Tree

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
PM = Identity("pm", "ctao_prod", TokenKind.USER, frozenset({"ProductionManagement"}))
ALICE = Identity("alice", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))
FIELDS = {"MCCampaign": "string", "particle": "string", "thetaP": "float", "data_level": "int"}
BASE = "/ctao/MC/Prod6"


def definition(name: str = "proc", query: str = "particle=gamma", **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "Processing",
        "input_query": query,
        "plugin": "Standard",
        "group_size": 2,
        "job_template": {"Executable": "process.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}.h5",
        "max_errors": 2,
        **kw,
    }


@pytest.fixture
def ctx(services: Any) -> Any:
    for name, ftype in FIELDS.items():
        M.add_field(services.ctx, ADMIN, FieldDeclaration(name=name, type=ftype))
    return services.ctx


@pytest.fixture
def tree(ctx: Any) -> Tree:
    """Two particles x 3 files; particle on the directories."""
    tree = Tree()
    with ctx.db.write() as conn:
        for particle in ("gamma", "proton"):
            tree.add_files(conn, [f"{BASE}/{particle}/f{i}" for i in range(3)])
    M.set_metadata(ctx, ADMIN, BASE, {"MCCampaign": "Prod6", "thetaP": 20})
    for particle in ("gamma", "proton"):
        M.set_metadata(ctx, ADMIN, f"{BASE}/{particle}", {"particle": particle})
    return tree


def count(ctx: Any, table: Any) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_create_attaches_the_existing_input(ctx: Any, tree: Tree) -> None:
    view = T.create(ctx, PM, definition())
    assert (view.status, view.type, view.owner, view.files) == (
        "New",
        "Processing",
        "pm",
        {"Unused": 3},
    )
    lfns = [f.lfn for f in T.files(ctx, view.name)]
    assert lfns == [f"{BASE}/gamma/f{i}" for i in range(3)]
    actions = [e.action for e in T.log(ctx, view.trans_id)]
    assert actions == ["create", "attach"]
    assert T.get(ctx, str(view.trans_id)).name == "proc"  # by id or by name
    started = T.start(ctx, PM, "proc")
    assert started.status == "Active"
    assert T.log(ctx, "proc")[-1].message == "New -> Active: started"


def test_bad_input_creates_nothing(ctx: Any, tree: Tree) -> None:
    with pytest.raises(InvalidInput, match="input_query"):
        T.create(ctx, PM, definition(query="partcle=gamma"))
    with pytest.raises(InvalidInput, match="plugin"):
        T.create(ctx, PM, definition(plugin="Nope"))
    with pytest.raises(InvalidInput, match="group_size"):
        T.create(ctx, PM, definition(group_size=0))
    with pytest.raises(InvalidInput, match="output_lfn_template"):
        T.create(ctx, PM, definition(output_lfn_template="/elsewhere/{{task_id}}.h5"))
    with pytest.raises(Forbidden):
        T.create(ctx, ALICE, definition())
    assert count(ctx, transformations) == 0
    assert count(ctx, trans_files) == 0
    T.create(ctx, PM, definition())
    with pytest.raises(Conflict, match="exists already"):
        T.create(ctx, PM, definition(query="particle=proton"))
    assert count(ctx, trans_files) == 3  # the second one attached nothing


def test_dry_run_writes_nothing(ctx: Any, tree: Tree) -> None:
    run = T.dry_run(ctx, PM, definition(query="MCCampaign=Prod6"))
    assert (run.matching_files, run.grouped_files, run.tasks, run.leftover_files) == (6, 6, 3, 0)
    import ctaprod.logic.transformations as module

    module.DRY_RUN_FILES, keep = 3, module.DRY_RUN_FILES
    try:  # a huge match is counted whole but grouped in part
        part = T.dry_run(ctx, PM, definition(query="MCCampaign=Prod6"))
    finally:
        module.DRY_RUN_FILES = keep
    assert (part.matching_files, part.grouped_files, part.tasks) == (6, 3, 1)
    assert run.task_sizes == [2, 2, 2]
    assert len(run.sample_lfns) == 6
    assert count(ctx, transformations) == 0


def test_illegal_state_changes_name_the_current_state(ctx: Any, tree: Tree) -> None:
    T.create(ctx, PM, definition(), start=True)
    with pytest.raises(Conflict, match="Active"):
        T.start(ctx, PM, "proc")
    with pytest.raises(Forbidden):
        T.stop(ctx, ALICE, "proc")
    assert T.stop(ctx, PM, "proc").status == "Stopped"
    assert T.clean(ctx, PM, "proc").status == "Cleaning"
    with pytest.raises(Conflict, match="Cleaning"):
        T.start(ctx, PM, "proc")
    with pytest.raises(NotFound):
        T.get(ctx, "nope")


def test_extend_and_rescan(ctx: Any, tree: Tree) -> None:
    view = T.create(ctx, PM, definition())
    extended = T.extend(ctx, PM, "proc", query="MCCampaign=Prod6")
    assert extended.files == {"Unused": 6}
    assert extended.input_query == "MCCampaign=Prod6"
    # A file that came in without an event (a bug, an outage): the re-scan finds it.
    with ctx.db.write() as conn:
        tree.add_files(conn, [f"{BASE}/gamma/late"])
    result = T.rescan(ctx, PM, view.trans_id)
    assert (result.matching_files, result.attached) == (7, 1)
    assert T.rescan(ctx, PM, view.trans_id).attached == 0


def test_a_task_that_ends_moves_its_files_on(ctx: Any, tree: Tree) -> None:
    view = T.create(ctx, PM, definition(max_errors=2))
    tid = view.trans_id

    def make_task() -> int:
        with ctx.db.write() as conn:
            rows = ctx.trans.files(conn, tid, statuses=["Unused"], limit=2)
            [task] = ctx.trans.create_tasks(
                conn, tid, [NewTask([r["file_id"] for r in rows])], "Created", ctx.clock()
            )
            change_trans_files(
                ctx, conn, [r["id"] for r in rows],
                lambda r: [Change(TransFileStatus.ASSIGNED, values={"task_id": task})],
                source="test",
            )  # fmt: skip
        return task

    def end(task: int, status: TaskStatus, reason: str = "") -> None:
        with ctx.db.write() as conn:
            change_tasks(
                ctx, conn, [task],
                lambda r: [Change(TaskStatus.SUBMITTED), Change(status, reason)],
                source="test",
            )  # fmt: skip

    first = make_task()
    end(first, TaskStatus.FAILED, "job 7 Failed: exit 1")
    files = {f.file_id: f for f in T.files(ctx, tid)}
    failed = [f for f in files.values() if f.error_count == 1]
    assert len(failed) == 2
    assert all(f.status == "Unused" and f.task_id is None for f in failed)
    assert "exit 1" in failed[0].last_error
    second = make_task()  # the same two files (oldest Unused first)
    end(second, TaskStatus.FAILED, "again")
    assert sorted(f.status for f in T.files(ctx, tid)) == ["MaxReset", "MaxReset", "Unused"]
    [reset, _] = T.files(ctx, tid, statuses=["MaxReset"])
    assert reset.failures == ["job 7 Failed: exit 1", "again"]  # every failure, oldest first
    third = make_task()  # the one Unused file left
    end(third, TaskStatus.DONE)
    assert sorted(f.status for f in T.files(ctx, tid)) == ["MaxReset", "MaxReset", "Processed"]
    [t3] = [t for t in T.tasks(ctx, tid, with_inputs=True) if t.task_id == third]
    assert (t3.status, t3.submitted is not None, t3.ended is not None) == ("Done", True, True)
    assert t3.inputs == [f"{BASE}/gamma/f2"]
    # A final task is never reopened.
    with pytest.raises(Conflict), ctx.db.write() as conn:
        change_tasks(ctx, conn, [third], lambda r: [Change(TaskStatus.RUNNING)], source="t")


def _run_jobs(ctx: Any, job_ids: list[int], *steps: Any) -> None:
    """Drive jobs through the job door (as pilots and wrappers would)."""
    from ctaprod.logic.job_status import Step, transition_jobs

    with ctx.db.write() as conn:
        for target in steps:
            transition_jobs(ctx, conn, job_ids, lambda s, t=target: [Step(t, "test")], "test")


def test_tasks_are_made_submitted_and_follow_their_jobs(ctx: Any, tree: Tree) -> None:
    """The chain without agents' loops: Unused files -> tasks -> jobs -> Done -> Processed;
    a failed job is rescheduled within the limit, then its task fails and its files return."""
    from ctaprod.core.job_states import JobStatus as J
    from ctaprod.logic import trans_work as W

    ctx.settings.jobs.max_reschedules = 1
    view = T.create(ctx, PM, definition(query="MCCampaign=Prod6", max_errors=3), start=True)
    tid = view.trans_id
    assert W.make_tasks(ctx) == 3  # 6 files, 2 per task
    assert W.make_tasks(ctx) == 0  # nothing Unused is left
    assert T.get(ctx, tid).files == {"Assigned": 6}
    assert W.submit_tasks(ctx) == 3
    assert W.submit_tasks(ctx) == 0
    tasks = T.tasks(ctx, tid, with_inputs=True)
    assert [t.status for t in tasks] == ["Waiting"] * 3
    jobs = [t.job_id for t in tasks]
    assert all(j is not None for j in jobs)
    from ctaprod.logic import queries as Q

    detail = Q.job_detail(ctx, PM, jobs[0])
    assert tasks[0].inputs == [lfn.removeprefix("LFN:") for lfn in detail.description.input_data]
    assert detail.description.job_group == f"{tid:08d}"
    assert [lfn.removeprefix("LFN:") for lfn in detail.description.output_data] == [
        f"{BASE}/out/{tid}/{tasks[0].task_id}.h5"
    ]
    # Job 0 finishes; job 1 fails twice (rescheduled once in between); job 2 is killed.
    _run_jobs(ctx, [jobs[0]], J.MATCHED, J.RUNNING, J.DONE)
    _run_jobs(ctx, [jobs[1]], J.MATCHED, J.RUNNING, J.FAILED)
    assert T.tasks(ctx, tid)[1].status == "Running"  # not failed yet: it will be retried
    assert W.recover_tasks(ctx).rescheduled == 1
    assert T.tasks(ctx, tid)[1].status == "Waiting"
    _run_jobs(ctx, [jobs[1]], J.MATCHED, J.RUNNING, J.FAILED)  # past the limit now
    _run_jobs(ctx, [jobs[2]], J.KILLED)
    assert [t.status for t in T.tasks(ctx, tid)] == ["Done", "Running", "Waiting"]
    recovered = W.recover_tasks(ctx)  # no outputs registered: the tasks just end
    assert (recovered.rescheduled, recovered.failed, recovered.killed) == (0, 1, 1)
    statuses = [t.status for t in T.tasks(ctx, tid)]
    assert statuses == ["Done", "Failed", "Killed"]
    files = {f.lfn: f for f in T.files(ctx, tid)}
    for lfn in tasks[0].inputs:
        assert files[lfn].status == "Processed"
    for lfn in tasks[1].inputs:
        assert (files[lfn].status, files[lfn].error_count) == ("Unused", 1)
    for lfn in tasks[2].inputs:
        assert (files[lfn].status, files[lfn].error_count) == ("Unused", 0)
    # The returned files make new tasks; the input is complete: the transformation ends.
    assert W.make_tasks(ctx) == 2
    assert W.submit_tasks(ctx) == 2
    T.input_complete(ctx, PM, tid)
    assert W.complete(ctx) == 1
    assert T.get(ctx, tid).status == "Completing"
    new_jobs = [t.job_id for t in T.tasks(ctx, tid, statuses=["Waiting"])]
    _run_jobs(ctx, new_jobs, J.MATCHED, J.RUNNING, J.DONE)
    assert W.complete(ctx) == 1
    final = T.get(ctx, tid)
    assert (final.status, final.files) == ("Completed", {"Processed": 6})


def test_mc_simulation_makes_its_runs_once(ctx: Any) -> None:
    from ctaprod.logic import trans_work as W

    mc = {
        "name": "mc",
        "type": "MCSimulation",
        "max_tasks": 5,
        "run_number_start": 100,
        "job_template": {"Executable": "sim.sh", "Arguments": "--run {{run_number}}"},
        "output_lfn_template": f"{BASE}/mc/{{{{run_number}}}}.simtel.zst",
    }
    view = T.create(ctx, PM, mc, start=True)
    assert W.make_tasks(ctx) == 5
    assert W.make_tasks(ctx) == 0
    assert W.submit_tasks(ctx) == 5
    runs = [t.run_number for t in T.tasks(ctx, view.trans_id)]
    assert runs == [100, 101, 102, 103, 104]
    assert W.complete(ctx) == 1
    assert T.get(ctx, view.trans_id).status == "Completing"


def test_cleaning_kills_live_tasks_and_ends_cleaned(ctx: Any, tree: Tree) -> None:
    from ctaprod.core.job_states import JobStatus as J
    from ctaprod.logic import trans_work as W

    view = T.create(ctx, PM, definition(query="MCCampaign=Prod6"), start=True)
    tid = view.trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    jobs = [t.job_id for t in T.tasks(ctx, tid)]
    _run_jobs(ctx, [jobs[0]], J.MATCHED, J.RUNNING)
    _run_jobs(ctx, [jobs[1]], J.MATCHED, J.RUNNING)
    import io

    from ctaprod.logic.registration import register_files

    out = f"{BASE}/out/{tid}/done.h5"
    ctx.storage("LOCAL-DISK").put(out, io.BytesIO(b"out"))
    job_ident = Identity(
        "pm", "ctao_prod", TokenKind.JOB, frozenset({"ProductionManagement"}),
        job_id=jobs[1], attempt=0,
    )  # fmt: skip
    register_files(
        ctx, job_ident,
        [FileRegistration(lfn=out, size=3, checksum="026d0151", se="LOCAL-DISK")],
        verify=False,
    )  # fmt: skip
    _run_jobs(ctx, [jobs[1]], J.DONE)
    T.clean(ctx, PM, tid)
    assert W.submit_tasks(ctx) == 0  # nothing is submitted while cleaning
    assert W.clean(ctx) == 2  # the running job and the waiting one
    assert [t.status for t in T.tasks(ctx, tid)] == ["Killed", "Done", "Killed"]
    assert T.get(ctx, tid).status == "Cleaned"
    assert not ctx.storage("LOCAL-DISK").exists(out)  # its outputs are gone
    with ctx.db.read() as conn:
        assert ctx.catalog.files_of_jobs(conn, jobs) == {}
    from ctaprod.logic import queries as Q

    assert Q.job_detail(ctx, PM, jobs[0]).status == "Killed"
    with pytest.raises(Conflict, match="Cleaned"):
        T.start(ctx, PM, tid)


def test_replication_tasks_are_requests_and_follow_them(ctx: Any, tree: Tree) -> None:
    from ctaprod.core.requests import RequestStatus as R
    from ctaprod.logic import trans_work as W
    from ctaprod.logic.request_states import change_requests

    view = T.create(
        ctx,
        PM,
        {
            "name": "repl",
            "type": "Replication",
            "input_query": "particle=gamma",
            "parameters": {"target_ses": ["DISK-B"]},
        },
        start=True,
    )
    tid = view.trans_id
    assert W.make_tasks(ctx) == 3  # Broadcast: one task per file
    assert W.submit_tasks(ctx) == 3
    tasks = T.tasks(ctx, tid, with_inputs=True)
    assert [t.status for t in tasks] == ["Waiting"] * 3
    assert all(t.request_id is not None and t.job_id is None for t in tasks)
    from ctaprod.logic import requests as RL

    info = RL.get_request(ctx, PM, tasks[0].request_id)
    [op] = info.operations
    assert (op.type, op.arguments) == ("ReplicateAndRegister", {"target_ses": ["DISK-B"]})
    assert [f.lfn for f in op.files] == tasks[0].inputs
    with ctx.db.write() as conn:
        ids = [t.request_id for t in tasks[:2]]
        change_requests(ctx, conn, ids, lambda r: [Change(R.ASSIGNED)], source="test")
        change_requests(ctx, conn, [ids[0]], lambda r: [Change(R.DONE)], source="test")
        change_requests(ctx, conn, [ids[1]], lambda r: [Change(R.FAILED, "SE down")], source="test")
    statuses = [t.status for t in T.tasks(ctx, tid)]
    assert statuses == ["Done", "Failed", "Waiting"]
    files = {f.lfn: (f.status, f.error_count) for f in T.files(ctx, tid)}
    assert files[tasks[0].inputs[0]] == ("Processed", 0)
    assert files[tasks[1].inputs[0]] == ("Unused", 1)


def test_a_job_that_fails_after_its_outputs_is_reconciled(ctx: Any, tree: Tree) -> None:
    """All outputs registered before the job failed: the task is Done. Part of them: they are
    removed from catalog and storage, and the task fails (no input group with two outputs)."""
    import io

    from ctaprod.core.job_states import JobStatus as J
    from ctaprod.logic import trans_work as W
    from ctaprod.logic.registration import register_files

    ctx.settings.jobs.max_reschedules = 0
    templates = [
        f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}.h5",
        f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}.log",
    ]
    view = T.create(ctx, PM, definition(group_size=1, output_lfn_template=templates), start=True)
    tid = view.trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    a, b, c = T.tasks(ctx, tid)
    se = ctx.storage("LOCAL-DISK")

    def write(task: Any, suffixes: list[str]) -> list[str]:
        ident = Identity(
            "pm", "ctao_prod", TokenKind.JOB, frozenset({"ProductionManagement"}),
            job_id=task.job_id, attempt=0,
        )  # fmt: skip
        lfns = [f"{BASE}/out/{tid}/{task.task_id}.{s}" for s in suffixes]
        regs = []
        for lfn in lfns:
            se.put(lfn, io.BytesIO(b"out"))
            regs.append(FileRegistration(lfn=lfn, size=3, checksum="026d0151", se="LOCAL-DISK"))
        register_files(ctx, ident, regs, verify=False)
        return lfns

    _run_jobs(ctx, [a.job_id, b.job_id, c.job_id], J.MATCHED, J.RUNNING)
    write(a, ["h5", "log"])  # everything, then the job fails
    partial = write(b, ["h5"])  # half
    _run_jobs(ctx, [a.job_id, b.job_id, c.job_id], J.FAILED)
    recovered = W.recover_tasks(ctx)
    assert (recovered.done, recovered.failed, recovered.outputs_removed) == (1, 2, 1)
    assert [t.status for t in T.tasks(ctx, tid)] == ["Done", "Failed", "Failed"]
    with ctx.db.read() as conn:
        assert ctx.catalog.files_of_jobs(conn, [b.job_id]) == {}
    assert not se.exists(partial[0])
    assert se.exists(f"{BASE}/out/{tid}/{a.task_id}.h5")  # the Done task's outputs stay
    files = {f.lfn: (f.status, f.error_count) for f in T.files(ctx, tid)}
    assert sorted(files.values()) == [("Processed", 0), ("Unused", 1), ("Unused", 1)]


def test_a_bysize_group_never_exceeds_the_input_files_of_a_job(ctx: Any, tree: Tree) -> None:
    from ctaprod.logic import trans_work as W

    ctx.settings.jobs.max_input_data = 2
    view = T.create(
        ctx, PM, definition(query="MCCampaign=Prod6", plugin="BySize", group_size=10**9),
        start=True,
    )  # fmt: skip
    T.input_complete(ctx, PM, view.trans_id)  # the last, smaller group too
    assert W.make_tasks(ctx) == 3  # 6 files, one group by size, cut in jobs of 2 files
    assert W.submit_tasks(ctx) == 3
    assert all(len(t.inputs) == 2 for t in T.tasks(ctx, view.trans_id, with_inputs=True))


def test_submitted_jobs_carry_what_outputs_inherit(ctx: Any, tree: Tree) -> None:
    """``inherit_metadata``: read from the catalog (directory values, then the file's own)
    when the task's job is made; one output per input takes its input's values, a task-wide
    output those all the task's inputs share."""
    from ctaprod.logic import queries as Q
    from ctaprod.logic import trans_work as W

    M.set_metadata(ctx, ADMIN, f"{BASE}/gamma/f0", {"data_level": 0})
    M.set_metadata(ctx, ADMIN, f"{BASE}/gamma/f1", {"data_level": 1})
    each = f"{BASE}/out/{{{{transformation_id}}}}/{{{{input_stem}}}}_{{{{task_id}}}}.h5"
    shared = f"{BASE}/out/{{{{transformation_id}}}}/m{{{{task_id}}}}.h5"
    for name, template in (("each", each), ("shared", shared)):
        T.create(
            ctx,
            PM,
            definition(
                name=name,
                output_lfn_template=template,
                inherit_metadata=["particle", "thetaP", "data_level"],
            ),
            start=True,
        )
    assert W.make_tasks(ctx) == 2  # 3 gamma files: one full group of 2 in each
    assert W.submit_tasks(ctx) == 2
    first = {}
    for name in ("each", "shared"):
        view = T.get(ctx, name)
        task = T.tasks(ctx, view.trans_id, with_inputs=True)[0]
        assert task.inputs == [f"{BASE}/gamma/f0", f"{BASE}/gamma/f1"]
        assert task.job_id is not None
        first[name] = Q.job_detail(ctx, PM, task.job_id).description.output_file_metadata
    tid, task_id = T.get(ctx, "each").trans_id, T.tasks(ctx, T.get(ctx, "each").trans_id)[0].task_id
    gamma = {"particle": "gamma", "thetaP": 20.0}
    assert first["each"] == {
        f"{BASE}/out/{tid}/f0_{task_id}.h5": {**gamma, "data_level": 0},
        f"{BASE}/out/{tid}/f1_{task_id}.h5": {**gamma, "data_level": 1},
    }
    assert list(first["shared"].values()) == [gamma]  # the data levels differ
