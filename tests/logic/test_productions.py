"""Production use cases on the real test database: submit all-or-nothing, bad input refused
before anything is written, dry run, driving, the cascade of input-complete to the children
with the real agents' bodies, input_limit, clean."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.errors import Conflict, Forbidden, InvalidInput
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus as J
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.db.tables import productions, transformations
from ctaprod.logic import metadata as M
from ctaprod.logic import productions as P
from ctaprod.logic import trans_work as W
from ctaprod.logic import transformations as T
from ctaprod.logic.registration import register_files
from ctaprod.logic.trans_trigger import Trigger
from tests.db.test_metadata_tree import Tree
from tests.logic.test_transformations import _run_jobs

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
PM = Identity("pm", "ctao_prod", TokenKind.USER, frozenset({"ProductionManagement"}))
ALICE = Identity("alice", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))
BASE = "/ctao/MC/PP"


def mc(n: int = 2) -> dict[str, Any]:
    return {
        "type": "MCSimulation",
        "max_tasks": n,
        "job_template": {"Executable": "sim.sh", "Arguments": "{{run_number}}"},
        "output_lfn_template": f"{BASE}/sim/run{{{{run_number}}}}.simtel",
        "output_metadata": {"stage": 0},
    }


def proc(level: int = 1, size: int = 1) -> dict[str, Any]:
    return {
        "type": "Processing",
        "group_size": size,
        "job_template": {"Executable": "proc.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": f"{BASE}/dl{level}/{{{{task_id}}}}.h5",
        "output_metadata": {"stage": level},
    }


def production(name: str = "pp", **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base_path": BASE,
        "steps": [
            {"id": "1", "name": "sim", "transformation": mc()},
            {"id": "2", "parents": ["1"], "transformation": proc(1)},
            {"id": "3", "parents": ["2"], "input_query": "stage=1",
             "transformation": proc(2, size=2)},
        ],
        **kw,
    }  # fmt: skip


@pytest.fixture
def ctx(services: Any) -> Any:
    M.add_field(services.ctx, ADMIN, FieldDeclaration(name="stage", type="int"))
    return services.ctx


def count(ctx: Any, table: Any) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_submit_creates_every_step_linked_to_its_parents(ctx: Any) -> None:
    view = P.submit(ctx, PM, production())
    assert (view.status, view.validation_status, view.owner) == ("New", "NotValidated", "pm")
    steps = {s.step_id: s for s in view.steps}
    assert [s.trans_name for s in view.steps] == ["pp.1.sim", "pp.2", "pp.3"]
    t1, t2, t3 = (steps[i].trans_id for i in "123")
    assert T.get(ctx, t2).input_query == f"prod_step_id in ({t1})"
    assert T.get(ctx, t3).input_query == f"prod_step_id in ({t2}) stage=1"
    assert T.get(ctx, t1).definition["output_metadata"] == {"stage": 0, "prod_step_id": t1}
    assert [e.action for e in P.log(ctx, "pp")] == ["submit", "create"]
    with pytest.raises(Conflict, match="exists already"):
        P.submit(ctx, PM, production())


def test_bad_input_creates_nothing(ctx: Any) -> None:
    bad = production()
    bad["steps"][1]["transformation"] = {**proc(1), "grup_size": 2}
    with pytest.raises(InvalidInput) as info:
        P.submit(ctx, PM, bad)
    assert (info.value.detail["step"], info.value.detail["key"]) == (
        "2",
        "transformation.grup_size",
    )
    incompatible = production()
    incompatible["steps"][2]["input_query"] = "stage=0"
    with pytest.raises(InvalidInput, match="stage") as info:
        P.submit(ctx, PM, incompatible)
    assert info.value.detail["step"] == "3"
    unknown = production()
    unknown["steps"][1]["dataset"] = "nope"
    with pytest.raises(InvalidInput, match="dataset 'nope' does not exist"):
        P.submit(ctx, PM, unknown)
    with pytest.raises(InvalidInput, match="output_lfn_template"):
        P.submit(ctx, PM, production(base_path="/ctao/DATA/elsewhere"))
    with pytest.raises(Forbidden):
        P.submit(ctx, ALICE, production())
    assert (count(ctx, productions), count(ctx, transformations)) == (0, 0)


def test_a_failure_at_step_three_leaves_nothing(ctx: Any) -> None:
    """The third transformation's name is taken: the production and its first two
    transformations, written in the same transaction, are rolled back."""
    T.create(ctx, PM, {**proc(5), "name": "pp.3", "input_query": "stage=7"})
    with pytest.raises(Conflict, match=r"pp\.3"):
        P.submit(ctx, PM, production())
    assert (count(ctx, productions), count(ctx, transformations)) == (0, 1)


def test_dry_run_writes_nothing(ctx: Any) -> None:
    dry = P.dry_run(ctx, PM, production())
    assert dry.format == "generic"
    assert [s.trans_name for s in dry.steps] == ["pp.1.sim", "pp.2", "pp.3"]
    assert dry.steps[0].dry_run.tasks == 2
    assert dry.steps[1].input_query == "prod_step_id in (1)"
    assert (count(ctx, productions), count(ctx, transformations)) == (0, 0)
    # A child reads what its parents will write, nothing today, even where the stand-in ID
    # of its query is a real transformation whose outputs are in the catalog.
    reg = FileRegistration(
        lfn=f"{BASE}/other/out.dat", size=1, checksum="00000001", metadata={"prod_step_id": 1}
    )
    register_files(ctx, PM, [reg], verify=False)
    assert M.count_files(ctx, "prod_step_id in (1)").count == 1
    again = P.dry_run(ctx, PM, production())
    assert (again.steps[1].dry_run.matching_files, again.steps[1].dry_run.tasks) == (0, 0)


def test_driving_checks_the_state(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    view = P.submit(ctx, PM, production())
    with pytest.raises(Conflict, match="New"):
        P.stop(ctx, PM, view.prod_id)
    started = P.start(ctx, PM, view.prod_id)
    assert started.status == "Active"
    assert {s.trans_status for s in started.steps} == {"Active"}
    stopped = P.stop(ctx, PM, "pp")
    assert {s.trans_status for s in stopped.steps} == {"Stopped"}
    assert P.start(ctx, PM, "pp").status == "Active"
    with pytest.raises(Forbidden):
        P.start(ctx, ALICE, "pp")
    actions = [(e.action, e.message) for e in P.log(ctx, "pp")]
    assert ("status", "New -> Active: started") in actions


def _finish_tasks(ctx: Any, trans_id: int, outputs: bool = True) -> None:
    """Every submitted task's job runs and ends Done, registering its outputs with the
    metadata its job description carries (as the pilot's upload does)."""
    from ctaprod.logic import queries as Q

    W.make_tasks(ctx)
    W.submit_tasks(ctx)
    for task in T.tasks(ctx, trans_id, statuses=["Waiting"]):
        job = task.job_id
        assert job is not None
        _run_jobs(ctx, [job], J.MATCHED, J.RUNNING)
        desc = Q.job_detail(ctx, PM, job).description
        if outputs:
            ident = Identity(
                "pm", "ctao_prod", TokenKind.JOB, frozenset({"ProductionManagement"}),
                job_id=job, attempt=0,
            )  # fmt: skip
            regs = [
                FileRegistration(
                    lfn=lfn.removeprefix("LFN:"),
                    size=1,
                    checksum="00000001",
                    metadata=dict(desc.output_metadata or {}),
                )
                for lfn in desc.output_data
            ]
            register_files(ctx, ident, regs, verify=False)
        _run_jobs(ctx, [job], J.DONE)


def _turn(ctx: Any, trigger: Trigger, marks: dict[int, int]) -> None:
    trigger.run()
    W.make_tasks(ctx)
    W.complete(ctx)
    P.advance(ctx, marks)


def test_completion_cascades_from_parents_to_children(ctx: Any) -> None:
    view = P.submit(ctx, PM, production())
    t1, t2, t3 = (s.trans_id for s in view.steps)
    P.start(ctx, PM, "pp")
    trigger, marks = Trigger(ctx), {}
    _finish_tasks(ctx, t1)  # two MC runs, one output each
    _turn(ctx, trigger, marks)
    assert T.get(ctx, t1).status == "Completed"
    _turn(ctx, trigger, marks)
    assert T.get(ctx, t2).input_complete
    assert T.get(ctx, t2).files == {"Assigned": 2}  # both MC outputs, one per task
    assert not T.get(ctx, t3).input_complete
    _finish_tasks(ctx, t2)
    for _ in range(3):
        _turn(ctx, trigger, marks)
    assert T.get(ctx, t2).status == "Completed"
    assert T.get(ctx, t3).input_complete
    assert T.get(ctx, t3).tasks == {"Created": 1}  # the 2 DL1 files in one group
    _finish_tasks(ctx, t3)
    for _ in range(2):
        _turn(ctx, trigger, marks)
    final = P.get(ctx, "pp")
    assert final.status == "Completed"
    assert [s.trans_status for s in final.steps] == ["Completed"] * 3
    status = P.status(ctx, "pp")
    assert status.steps[2].jobs == {"Done": 1}
    assert any(e.action == "cascade" for e in P.log(ctx, "pp"))
    # One more MC run: the production and its children are open again, then complete again.
    extended = P.extend(ctx, PM, "pp", 1)
    assert extended.status == "Active"
    assert T.get(ctx, t1).max_tasks == 3
    assert [(s.trans_status, s.input_complete) for s in extended.steps[1:]] == [
        ("Active", False),
        ("Active", False),
    ]
    _finish_tasks(ctx, t1)
    for _ in range(3):
        _turn(ctx, trigger, marks)
    _finish_tasks(ctx, t2)
    for _ in range(3):
        _turn(ctx, trigger, marks)
    _finish_tasks(ctx, t3)
    for _ in range(2):
        _turn(ctx, trigger, marks)
    again = P.get(ctx, "pp")
    assert again.status == "Completed"
    assert [s.files for s in again.steps[1:]] == [{"Processed": 3}, {"Processed": 3}]
    # Clean: every step is cleaned by the transformation agent, then the production.
    P.clean(ctx, PM, "pp")
    W.clean(ctx)
    P.advance(ctx, marks)
    cleaned = P.get(ctx, "pp")
    assert cleaned.status == "Cleaned"
    assert [s.trans_status for s in cleaned.steps] == ["Cleaned"] * 3
    assert M.count_files(ctx, "stage>=0").count == 0


def test_flush_completes_a_data_driven_production(ctx: Any) -> None:
    """A root that reads a catalog query never knows its input is over: flush says so."""
    tree = Tree(owner="pm", group="ctao_prod")
    with ctx.db.write() as conn:
        tree.add_files(conn, [f"{BASE}/raw/f{i}" for i in range(3)])
    M.set_metadata(ctx, ADMIN, f"{BASE}/raw", {"stage": 0})
    definition = {
        "name": "data",
        "base_path": BASE,
        "steps": [
            {"id": "1", "input_query": "stage=0", "input_limit": 2,
             "transformation": proc(1, size=5)},
        ],
    }  # fmt: skip
    view = P.submit(ctx, PM, definition)
    tid = view.steps[0].trans_id
    assert T.get(ctx, tid).files == {"Unused": 2}  # the input limit (test mode)
    P.start(ctx, PM, "data")
    assert W.make_tasks(ctx) == 0  # a group of 5 waits for more
    P.flush(ctx, PM, "data")
    assert P.get(ctx, "data").status == "Flush"
    _finish_tasks(ctx, tid)
    W.complete(ctx)
    W.complete(ctx)
    P.advance(ctx)
    assert P.get(ctx, "data").status == "Completed"


def test_validation_outcome_is_recorded(ctx: Any) -> None:
    """logic.prod_validation's verdict is kept on the production: status, summary, when and
    by whom. Here the MC step's outputs are registered without any replica: not valid."""
    view = P.submit(ctx, PM, production())
    P.start(ctx, PM, "pp")
    _finish_tasks(ctx, view.steps[0].trans_id)
    outcome = P.validate(ctx, PM, "pp", checksum="full", sample=5)
    assert outcome.validation_status == "Invalid"
    assert outcome.summary["valid"] is False
    assert outcome.summary["produced_outputs"] == 2
    assert outcome.summary["totals"]["no_replica"] == 2
    assert outcome.summary["lines"][0].startswith("Production validation: NOT VALID")
    assert [s["trans_id"] for s in outcome.report["steps"]] == [s.trans_id for s in view.steps]
    shown = P.get(ctx, "pp")
    assert (shown.validation_status, shown.validated_by) == ("Invalid", "pm/ctao_prod")
    assert shown.validation_summary == outcome.summary
    with pytest.raises(InvalidInput, match="checksum"):
        P.validate(ctx, PM, "pp", checksum="most")
