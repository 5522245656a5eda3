"""Every CTADIRAC fixture workflow is accepted by the parser `prod submit` and `prod dry-run`
use (``logic.productions.check``) on a real database, once the datasets it names exist, and
``submit`` creates all its steps in one transaction; a missing dataset is a clear error
naming the step, and nothing is created.

The two datasets of the fixtures are created from their JSON files; the others from their
names, the way CTAO names datasets (``<campaign>_<site>[_<layout>][_NSB<n>x]_<particle>_<pointing>
_<zenith>deg[_<div>div]_<level>[_<split>]``). ``prod5_paranal_alpha_az000_merge.yml`` merges up
to 10,000 files in one job: the server's ``jobs.max_input_data`` is set to 10,000 here (the
default is being raised to that on main).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.errors import Conflict, InvalidInput
from ctaprod.core.identity import Identity
from ctaprod.core.metadata import DatasetCreate
from ctaprod.core.properties import TokenKind
from ctaprod.core.settings import JobSettings, Settings
from ctaprod.db.tables import production_steps, productions, transformations
from ctaprod.logic import datasets as D
from ctaprod.logic import productions as P
from ctaprod.logic import transformations as T
from tests.cta.conftest import DATASETS, WORKFLOWS, load

PM = Identity("pm", "ctao_prod", TokenKind.USER, frozenset({"ProductionManagement"}))
LEVELS = {"R1": -1, "DL0": 0, "DL1": 1, "DL2": 2}
PHI = {"North": 180.0, "South": 0.0}
PARTICLES = ("gamma", "gamma-diffuse", "electron", "proton", "helium")
LAYOUTS = {"AdvancedBaseline": "Advanced-Baseline"}


def query_from_name(name: str) -> dict[str, Any]:
    """A plausible dataset query built from a dataset's name, in the fixtures' format."""
    parts = name.split("_")
    at = next(i for i, part in enumerate(parts) if part in ("LaPalma", "Paranal"))
    # CORSIKA_<campaign>_...: showers only, no sim_telarray (SimTelProcessing reads them).
    prog = "airshower_sim_prog" if parts[0] == "CORSIKA" else "tel_sim_prog"
    query: dict[str, Any] = {
        prog: "corsika" if parts[0] == "CORSIKA" else "sim_telarray",
        "MCCampaign": "_".join(parts[:at]),
        "site": parts[at],
    }
    for part in parts[at + 1 :]:
        if m := re.fullmatch(r"NSB(\d+)x", part):
            query["nsb"] = {"=": int(m[1])}
        elif part in PHI:
            query["phiP"] = {"=": PHI[part]}
        elif m := re.fullmatch(r"(\d+)deg", part):
            query["thetaP"] = {"=": int(m[1])}
        elif m := re.fullmatch(r"([\d.]+)div", part):
            query["div_ang"] = m[1]
        elif part in LEVELS:
            query["data_level"] = {"=": LEVELS[part]}
        elif part in ("train", "test", "en", "cl"):
            query["split"] = f"{query['split']}_{part}" if "split" in query else part
        elif part in PARTICLES:
            query["particle"] = part
        else:
            assert "array_layout" not in query, (name, part)
            query["array_layout"] = LAYOUTS.get(part, part)
    query["outputType"] = "Data"
    return query


def referenced_datasets(path: Path) -> list[str]:
    raw = load(path)
    names = [(s.get("input_meta_query") or {}).get("dataset") for s in raw["ProdSteps"]]
    return [str(n) for n in names if n]


ALL_DATASETS = sorted({n for p in WORKFLOWS for n in referenced_datasets(p)})


def test_the_name_rule_agrees_with_the_fixture_datasets() -> None:
    """The fixtures' own queries are what their names say (checks the rule above; their
    campaign is the test campaign, not the name's)."""

    def value(v: Any) -> Any:
        return v["="] if isinstance(v, dict) else v

    for name, query in DATASETS.items():
        built = query_from_name(name)
        for key in ("site", "particle", "array_layout", "thetaP", "phiP", "data_level", "nsb"):
            if key in query and key in built:  # what the name says
                assert value(built[key]) == value(query[key]), (name, key)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="test-secret-" + "x" * 40,
        jobs=JobSettings(max_input_data=10_000),
    )


@pytest.fixture
def ctx(services: Any) -> Any:
    for name in ALL_DATASETS:
        query = DATASETS.get(name) or query_from_name(name)
        D.create_dataset(services.ctx, PM, DatasetCreate(name=name, query=query))
    return services.ctx


def count(ctx: Any, table: Any) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_fixture_is_checked_and_submitted(ctx: Any, path: Path) -> None:
    raw = load(path)
    name = path.stem.replace("-", "_")
    plan = P.check(ctx, PM, raw, name=name, mc_tasks=3)
    assert plan.format == "ctadirac"
    assert [s.id for s in plan.definition.steps] == [str(s["ID"]) for s in raw["ProdSteps"]]
    for step in plan.order:
        assert (plan.datasets[step.id] is not None) == (step.dataset is not None)
        if step.dataset is not None:  # its outputs carry what its dataset's files carry
            query = DATASETS.get(step.dataset) or query_from_name(step.dataset)
            assert plan.specs[step.id].output_metadata["site"] == query["site"]
    dry = P.dry_run(ctx, PM, raw, name=name, mc_tasks=3)
    assert len(dry.steps) == len(raw["ProdSteps"])
    assert (count(ctx, productions), count(ctx, transformations)) == (0, 0)
    view = P.submit(ctx, PM, raw, name=name, mc_tasks=3)
    assert view.status == "New"
    assert len(view.steps) == len(raw["ProdSteps"])
    assert count(ctx, transformations) == count(ctx, production_steps) == len(view.steps)
    by_id = {s.step_id: s for s in view.steps}
    for step in plan.order:
        assert by_id[step.id].trans_name.startswith(f"{name}.{step.id}")


@pytest.mark.parametrize(
    "path", [p for p in WORKFLOWS if referenced_datasets(p)], ids=lambda p: p.stem
)
def test_a_missing_dataset_names_the_step_and_creates_nothing(services: Any, path: Path) -> None:
    raw = copy.deepcopy(load(path))
    (first, step_id) = next(
        (s["input_meta_query"]["dataset"], str(s["ID"]))
        for s in raw["ProdSteps"]
        if (s.get("input_meta_query") or {}).get("dataset")
    )
    # Every dataset but the first one it names exists.
    for name in ALL_DATASETS:
        if name != first:
            query = DATASETS.get(name) or query_from_name(name)
            D.create_dataset(services.ctx, PM, DatasetCreate(name=name, query=query))
    for call in (P.check, P.dry_run, P.submit):
        with pytest.raises(InvalidInput) as info:
            call(services.ctx, PM, raw, name="missing")
        assert info.value.message == f"step {step_id}: dataset {first!r} does not exist"
        assert info.value.detail["step"] == step_id
    assert (count(services.ctx, productions), count(services.ctx, transformations)) == (0, 0)


def test_a_failure_at_the_last_step_leaves_nothing(ctx: Any) -> None:
    """The 16 steps of the merge file are written in one transaction: the last step's
    transformation name taken makes the whole submission fail, nothing of it is left."""
    path = next(p for p in WORKFLOWS if p.name == "prod5_paranal_alpha_az000_merge.yml")
    raw = load(path)
    plan = P.check(ctx, PM, raw, name="merge16")
    last = plan.order[-1]
    taken = {**plan.specs[last.id].model_dump(mode="json", exclude_none=True)}
    T.create(ctx, PM, taken)
    with pytest.raises(Conflict, match=taken["name"].replace(".", r"\.")):
        P.submit(ctx, PM, raw, name="merge16")
    assert (count(ctx, productions), count(ctx, transformations)) == (0, 1)
    assert count(ctx, production_steps) == 0
