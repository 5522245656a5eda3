"""Production validation on the real test database and the real local SE: a production
built with the real use cases (transformations created and started, tasks made and submitted,
jobs driven through the job door, outputs written on the SE and registered by the jobs)
validates; each kind of problem is then found on its own."""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.errors import InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus as J
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.core.statemachine import Change
from ctaprod.core.trans_states import TaskStatus
from ctaprod.logic import metadata as M
from ctaprod.logic import prod_validation as V
from ctaprod.logic import trans_work as W
from ctaprod.logic import transformations as T
from ctaprod.logic.job_status import Step, transition_jobs
from ctaprod.logic.registration import register_files
from ctaprod.logic.trans_states import change_tasks

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
PM = Identity("pm", "ctao_prod", TokenKind.USER, frozenset({"ProductionManagement"}))
FIELDS = {"MCCampaign": "string", "particle": "string", "data_level": "int", "runNumber": "int"}
BASE = "/ctao/MC/Prod6"
SE = "LOCAL-DISK"
MC_LFN = f"{BASE}/mc/{{{{transformation_id}}}}/run{{{{run_number:6}}}}.simtel.zst"
PROC_LFN = f"{BASE}/dl2/{{{{transformation_id}}}}/{{{{input_stem}}}}_{{{{task_id}}}}.DL2.h5"


@pytest.fixture
def ctx(services: Any) -> Any:
    declared = {f.name for f in M.list_fields(services.ctx)}  # the CTA extension's
    for name, ftype in FIELDS.items():
        if name not in declared:
            M.add_field(services.ctx, ADMIN, FieldDeclaration(name=name, type=ftype))
    services.ctx.settings.jobs.max_reschedules = 0
    return services.ctx


def mc(runs: int = 3, name: str = "mc") -> dict[str, Any]:
    return {
        "name": name,
        "type": "MCSimulation",
        "max_tasks": runs,
        "run_number_start": 1000,
        "job_template": {"Executable": "sim.sh", "Arguments": "--run {{run_number}}"},
        "output_lfn_template": MC_LFN,
        "output_metadata": {
            "MCCampaign": "Prod6",
            "particle": "gamma",
            "data_level": -1,
            "runNumber": "{{run_number}}",
        },
    }


def processing(name: str = "proc") -> dict[str, Any]:
    return {
        "name": name,
        "type": "Processing",
        "input_query": "MCCampaign=Prod6 data_level=-1",
        "plugin": "Standard",
        "group_size": 1,
        "job_template": {"Executable": "process.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": PROC_LFN,
        "output_metadata": {"MCCampaign": "Prod6", "data_level": 2},
        "max_errors": 3,
    }


def drive(ctx: Any, job_ids: Sequence[int], *targets: J, minor: str = "", app: str = "") -> None:
    """Jobs through the job door, as pilots and wrappers report them."""
    with ctx.db.write() as conn:
        for target in targets:
            transition_jobs(
                ctx, conn, list(job_ids),
                lambda s, t=target: [Step(t, minor or t.value, app or None)], "test",
            )  # fmt: skip


def job_identity(job_id: int) -> Identity:
    return Identity(
        "pm", "ctao_prod", TokenKind.JOB, frozenset({"ProductionManagement"}),
        job_id=job_id, attempt=0,
    )  # fmt: skip


def job_outputs(ctx: Any, job_id: int) -> tuple[list[str], dict[str, Any]]:
    from ctaprod.core.jobs import JobDescription

    with ctx.db.read() as conn:
        desc = JobDescription.model_validate_json(ctx.jobs.description(conn, job_id))
    return list(desc.output_lfns("").values()), dict(desc.output_metadata or {})


def write_outputs(
    ctx: Any,
    job_id: int,
    *,
    content: bytes = b"payload output",
    metadata: dict[str, Any] | None = None,
    lfns: Sequence[str] | None = None,
) -> list[str]:
    """What the job wrapper does: the job's outputs on the SE, then registered by the job."""
    promised, meta = job_outputs(ctx, job_id)
    chosen = list(promised if lfns is None else lfns)
    storage = ctx.storage(SE)
    regs = []
    for lfn in chosen:
        storage.put(lfn, io.BytesIO(content))
        checksum = f"{zlib.adler32(content) & 0xFFFFFFFF:08x}"
        regs.append(
            FileRegistration(
                lfn=lfn, size=len(content), checksum=checksum, se=SE,
                metadata={**meta, **(metadata or {})},
            )
        )  # fmt: skip
    register_files(ctx, job_identity(job_id), regs, verify=False)
    return chosen


def tasks(ctx: Any, tid: int, statuses: Sequence[str] = ()) -> list[Any]:
    return T.tasks(ctx, tid, statuses=list(statuses))


def run_all(ctx: Any, tid: int, **write: Any) -> list[str]:
    """Every waiting task of ``tid`` runs, writes its outputs and ends Done."""
    out = []
    jobs = [t.job_id for t in tasks(ctx, tid, ["Waiting"])]
    drive(ctx, jobs, J.MATCHED, J.RUNNING)
    for job in jobs:
        out += write_outputs(ctx, job, **write)
    drive(ctx, jobs, J.DONE)
    return out


def production(ctx: Any, runs: int = 3) -> tuple[int, int, list[str], list[str]]:
    """MC (``runs`` runs) -> processing (one task per MC file), all Done and registered."""
    mc_id = T.create(ctx, PM, mc(runs), start=True).trans_id
    proc_id = T.create(ctx, PM, processing(), start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    mc_files = run_all(ctx, mc_id)
    T.input_complete(ctx, PM, proc_id)
    attach(ctx)
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    proc_files = run_all(ctx, proc_id)
    return mc_id, proc_id, mc_files, proc_files


def attach(ctx: Any) -> None:
    """The event consumer's turn: new catalog files attached to the transformations."""
    from ctaprod.logic.trans_trigger import Trigger

    Trigger(ctx).run()


def kinds(report: Any) -> dict[str, int]:
    return {k: v for k, v in report.totals.items() if v}


def test_a_complete_production_is_valid(ctx: Any) -> None:
    mc_id, proc_id, mc_files, proc_files = production(ctx)
    phases: list[tuple[str, int, int]] = []
    report = V.validate(
        ctx, [mc_id, proc_id], checksum="full", progress=lambda *a: phases.append(a)
    )
    assert report.valid, "\n".join(report.summary())
    assert kinds(report) == {}
    mc_step, proc_step = report.steps
    assert (mc_step.expected_outputs, mc_step.produced_outputs, mc_step.checked_replicas) == (
        3,
        3,
        3,
    )
    assert (proc_step.expected_outputs, proc_step.produced_outputs) == (3, 3)
    assert proc_step.tasks == {"Done": 3}
    assert proc_step.files == {"Processed": 3}
    assert report.paths == sorted([f"{BASE}/mc/{mc_id}", f"{BASE}/dl2/{proc_id}"])
    listed = {(c.se, c.path): c.storage_files for c in report.storage.checks}
    assert listed[(SE, f"{BASE}/mc/{mc_id}")] == 3
    assert any(p[0].startswith(f"step {mc_id}") for p in phases)
    assert phases[-1][0] == "storage"
    text = "\n".join(report.summary())
    assert text.startswith("Production validation: VALID")
    assert json.loads(report.to_json())["valid"] is True
    assert len(mc_files) == len(proc_files) == 3


def test_sample_is_deterministic_and_bounded(ctx: Any) -> None:
    mc_id, proc_id, _, _ = production(ctx, runs=5)
    one = V.validate(ctx, [mc_id], checksum="sample", sample=2)
    two = V.validate(ctx, [mc_id], checksum="sample", sample=2)
    assert one.steps[0].checked_files == 2
    assert one.valid
    assert two.valid
    none = V.validate(ctx, [mc_id, proc_id], checksum="none")
    assert none.valid
    assert sum(s.checked_files for s in none.steps) == 0


def test_missing_output(ctx: Any) -> None:
    mc_id = T.create(ctx, PM, mc(3), start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    jobs = [t.job_id for t in tasks(ctx, mc_id)]
    drive(ctx, jobs, J.MATCHED, J.RUNNING)
    write_outputs(ctx, jobs[0])
    write_outputs(ctx, jobs[1])
    drive(ctx, jobs, J.DONE)  # the third job says Done without registering its output
    report = V.validate(ctx, [mc_id])
    step = report.steps[0]
    assert not report.valid
    assert not step.valid
    assert kinds(report) == {"missing_outputs": 1}
    assert (step.expected_outputs, step.produced_outputs) == (3, 2)
    [issue] = step.missing_outputs.examples
    assert issue.task_id == tasks(ctx, mc_id)[2].task_id
    assert issue.reason == "not in the catalog"
    assert "missing outputs: 1" in "\n".join(report.summary())


def test_mc_runs_not_made_or_failed_are_missing(ctx: Any) -> None:
    mc_id = T.create(ctx, PM, mc(4), start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    all_tasks = tasks(ctx, mc_id)
    drive(ctx, [all_tasks[0].job_id], J.MATCHED, J.RUNNING)
    write_outputs(ctx, all_tasks[0].job_id)
    drive(ctx, [all_tasks[0].job_id], J.DONE)
    drive(ctx, [all_tasks[1].job_id], J.MATCHED, J.RUNNING, J.FAILED, minor="Payload failed")
    W.recover_tasks(ctx)  # no reschedule allowed: the task fails
    T.extend(ctx, PM, mc_id, max_tasks=6)  # two runs without a task yet
    report = V.validate(ctx, [mc_id])
    step = report.steps[0]
    assert step.expected_outputs == 6
    assert step.produced_outputs == 1
    assert step.missing_outputs.count == 5  # 1 Failed, 2 Waiting, 2 never made
    reasons = {i.reason for i in step.missing_outputs.examples}
    assert "its task is Failed" in reasons
    assert "its task is Waiting" in reasons
    assert any(r and "2 runs have no task yet" in r for r in reasons)
    assert step.stuck_tasks.count == 2


def test_wrong_metadata(ctx: Any) -> None:
    mc_id = T.create(ctx, PM, mc(2), start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    jobs = [t.job_id for t in tasks(ctx, mc_id)]
    drive(ctx, jobs, J.MATCHED, J.RUNNING)
    write_outputs(ctx, jobs[0])
    [lfn] = write_outputs(ctx, jobs[1], metadata={"particle": "proton", "runNumber": 7})
    drive(ctx, jobs, J.DONE)
    report = V.validate(ctx, [mc_id])
    assert kinds(report) == {"metadata_mismatch": 2}
    found = {
        (i.lfn, i.key, i.expected, i.found) for i in report.steps[0].metadata_mismatch.examples
    }
    run = tasks(ctx, mc_id)[1].run_number
    assert found == {(lfn, "particle", "gamma", "proton"), (lfn, "runNumber", run, 7)}


def _corrupt(ctx: Any, lfn: str, content: bytes) -> None:
    storage = ctx.storage(SE)
    storage.remove(lfn)
    storage.put(lfn, io.BytesIO(content))


def test_wrong_size(ctx: Any) -> None:
    mc_id, _, mc_files, _ = production(ctx)
    _corrupt(ctx, mc_files[1], b"short")
    report = V.validate(ctx, [mc_id], checksum="full")
    step = report.steps[0]
    assert kinds(report) == {"size_mismatch": 1, "storage_size_mismatch": 1}
    [issue] = step.size_mismatch.examples
    assert (issue.lfn, issue.se, issue.expected, issue.found) == (
        mc_files[1],
        SE,
        len(b"payload output"),
        5,
    )


def test_wrong_checksum(ctx: Any) -> None:
    mc_id, _, mc_files, _ = production(ctx)
    _corrupt(ctx, mc_files[0], b"PAYLOAD OUTPUT")  # same size, other bytes
    full = V.validate(ctx, [mc_id], checksum="full")
    assert kinds(full) == {"checksum_mismatch": 1}
    assert full.steps[0].checksum_mismatch.examples[0].lfn == mc_files[0]
    sampled = V.validate(ctx, [mc_id], checksum="sample", sample=3)  # all 3: found too
    assert kinds(sampled) == {"checksum_mismatch": 1}
    assert V.validate(ctx, [mc_id], checksum="none").valid  # not read: not seen


def test_orphan_on_storage(ctx: Any) -> None:
    mc_id, proc_id, _, _ = production(ctx)
    orphan = f"{BASE}/dl2/{proc_id}/stray_99.DL2.h5"
    ctx.storage(SE).put(orphan, io.BytesIO(b"nobody registered me"))
    report = V.validate(ctx, [mc_id, proc_id])
    assert kinds(report) == {"storage_orphans_on_storage": 1}
    assert all(s.valid for s in report.steps)
    assert not report.storage.valid
    [check] = [c for c in report.storage.checks if c.orphans_on_storage.count]
    assert check.orphans_on_storage.lfns == [orphan]
    assert orphan in "\n".join(report.summary())
    # Outside the paths asked for, it is not looked for.
    narrow = V.validate(ctx, [mc_id, proc_id], paths=[f"{BASE}/mc/{mc_id}"])
    assert narrow.valid


def test_catalog_file_missing_on_storage(ctx: Any) -> None:
    mc_id, _, mc_files, _ = production(ctx)
    ctx.storage(SE).remove(mc_files[2])
    report = V.validate(ctx, [mc_id], checksum="full")
    assert kinds(report) == {"missing_on_storage": 1, "storage_missing_on_storage": 1}
    assert report.steps[0].missing_on_storage.examples[0].lfn == mc_files[2]


def test_duplicate_output_for_one_input_group(ctx: Any) -> None:
    mc_id, proc_id, _, proc_files = production(ctx)
    first = tasks(ctx, proc_id)[0]
    # A bug makes a twin of a Done task (same input); the twin's job registers its outputs,
    # fails, and the task is failed behind the recovery's back: its outputs stay.
    from ctaprod.db.transformations import NewTask

    tid = proc_id

    with ctx.db.write() as conn:
        inputs = ctx.trans.task_inputs(conn, [first.task_id])[first.task_id]
        [twin] = ctx.trans.create_tasks(conn, tid, [NewTask(inputs)], "Created", ctx.clock())
    W.submit_tasks(ctx)
    [waiting] = tasks(ctx, proc_id, ["Waiting"])
    assert waiting.task_id == twin
    drive(ctx, [waiting.job_id], J.MATCHED, J.RUNNING)
    extra = write_outputs(ctx, waiting.job_id)
    drive(ctx, [waiting.job_id], J.FAILED, minor="Application error")
    with ctx.db.write() as conn:  # the recovery would remove the outputs; a bug did not
        change_tasks(
            ctx, conn, [twin],
            lambda r: [Change(TaskStatus.FAILED, "lost")], source="test", strict=False,
        )  # fmt: skip
    report = V.validate(ctx, [mc_id, proc_id])
    step = report.steps[1]
    assert step.duplicates.count == 2, step.duplicates
    reasons = sorted(i.reason or "" for i in step.duplicates.examples)
    assert reasons[0].startswith("input file in 1 Done tasks and in 2 tasks with outputs")
    assert reasons[1] == "output of a task that ended Failed"
    assert {i.lfn for i in step.duplicates.examples} >= set(extra)
    assert set(proc_files).isdisjoint(extra)


def test_stuck_files_and_tasks(ctx: Any) -> None:
    mc_id = T.create(ctx, PM, mc(2), start=True).trans_id
    proc = processing()
    proc["max_errors"] = 1
    proc_id = T.create(ctx, PM, proc, start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    run_all(ctx, mc_id)
    attach(ctx)
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    a, b = tasks(ctx, proc_id)
    drive(ctx, [a.job_id], J.MATCHED, J.RUNNING, J.FAILED, minor="Payload failed", app="exit 3")
    W.recover_tasks(ctx)  # a fails; max_errors 1: its file is MaxReset
    drive(ctx, [b.job_id], J.MATCHED, J.RUNNING)  # b runs on and on
    report = V.validate(ctx, [mc_id, proc_id])
    step = report.steps[1]
    assert kinds(report) == {"stuck_files": 2, "stuck_tasks": 1, "failed_jobs": 1}
    by_status = {i.status: i for i in step.stuck_files.examples}
    assert set(by_status) == {"MaxReset", "Assigned"}
    assert "1 errors" in (by_status["MaxReset"].reason or "")
    [stuck] = step.stuck_tasks.examples
    assert (stuck.task_id, stuck.status) == (b.task_id, "Running")
    assert stuck.reason
    assert f"job {b.job_id} Running" in stuck.reason


def test_failed_jobs_grouped_by_reason(ctx: Any) -> None:
    mc_id = T.create(ctx, PM, mc(4), start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    jobs = [t.job_id for t in tasks(ctx, mc_id)]
    drive(ctx, jobs, J.MATCHED, J.RUNNING)
    drive(ctx, jobs[:2], J.FAILED, minor="Application error", app="exit 3")
    drive(ctx, jobs[2:3], J.FAILED, minor="Stalled", app="")
    write_outputs(ctx, jobs[3])
    drive(ctx, jobs[3:], J.DONE)
    report = V.validate(ctx, [mc_id])
    groups = [
        (g.reason, g.jobs, g.still_failed, g.example_job_ids) for g in report.steps[0].failed_jobs
    ]
    assert groups == [
        ("Application error / exit 3", 2, 2, sorted(jobs[:2])),
        ("Stalled", 1, 1, [jobs[2]]),
    ]
    assert report.totals["failed_jobs"] == 3
    assert "Application error / exit 3" in "\n".join(report.summary())


def test_bad_arguments(ctx: Any) -> None:
    with pytest.raises(NotFound):
        V.validate(ctx, [12345])
    with pytest.raises(InvalidInput):
        V.validate(ctx, [])
    mc_id = T.create(ctx, PM, mc(1)).trans_id
    with pytest.raises(InvalidInput):
        V.validate(ctx, [mc_id], checksum="most")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        V.validate(ctx, [mc_id], sample=-1)


def test_default_paths() -> None:
    from ctaprod.core.transformations import TransformationSpec

    def spec(*templates: str) -> TransformationSpec:
        return TransformationSpec(name="x", type="Processing", output_lfn_template=list(templates))

    assert V.default_paths({7: spec("/a/b/{{transformation_id:3}}/{{task_id}}.h5")}) == ["/a/b/007"]
    assert V.default_paths(
        {
            1: spec("/a/{{transformation}}/x/{{task_id}}.h5", "/a/x/y/{{task_id}}.log"),
            2: spec("/a/{{task_id}}.h5"),
        }
    ) == ["/a"]


def test_unexpected_output_and_output_without_replica(ctx: Any) -> None:
    from ctaprod.core.catalog import ReplicaRef
    from ctaprod.logic.catalog import remove_replica_entries

    mc_id = T.create(ctx, PM, mc(2), start=True).trans_id
    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    jobs = [t.job_id for t in tasks(ctx, mc_id)]
    drive(ctx, jobs, J.MATCHED, J.RUNNING)
    [first] = write_outputs(ctx, jobs[0])
    extra = f"{BASE}/mc/{mc_id}/extra.log"
    write_outputs(ctx, jobs[0], lfns=[extra])  # a file no template promised
    [second] = write_outputs(ctx, jobs[1])
    drive(ctx, jobs, J.DONE)
    remove_replica_entries(ctx, ADMIN, [ReplicaRef(lfn=second, se=SE)])
    report = V.validate(ctx, [mc_id], checksum="full")
    step = report.steps[0]
    assert [i.lfn for i in step.unexpected_outputs.examples] == [extra]
    assert [i.lfn for i in step.no_replica.examples] == [second]
    # On storage, the file whose entry lost its replica is now an orphan.
    assert kinds(report) == {
        "unexpected_outputs": 1,
        "no_replica": 1,
        "storage_orphans_on_storage": 1,
    }
    assert step.checked_replicas == 1
    assert first != second
