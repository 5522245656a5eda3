"""The generic production definition: format detection, DAG checks, compatibility, and the
transformation definition of each step."""

from __future__ import annotations

from typing import Any

import pytest

from ctaprod.core.errors import InvalidInput
from ctaprod.core.metaquery import MetaSchema, parse
from ctaprod.core.productions import (
    FORMATS,
    ConvertOptions,
    FormatRegistry,
    ProductionFormat,
    check_compatibility,
    step_definition,
    to_definition,
    topological_order,
)

MC = {
    "type": "MCSimulation",
    "max_tasks": 4,
    "job_template": {"Executable": "sim.sh", "Arguments": "--run {{run_number}}"},
    "output_lfn_template": "/ctao/MC/p/sim/{{run_number}}.simtel",
    "output_metadata": {"data_level": 0, "particle": "gamma"},
}
PROC = {
    "type": "Processing",
    "group_size": 1,
    "job_template": {"Executable": "proc.sh", "Arguments": "{{input_lfns}}"},
    "output_lfn_template": "/ctao/MC/p/dl1/{{input_stem}}.dl1.h5",
    "output_metadata": {"data_level": 1},
}


def prod(*steps: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"name": "p1", "steps": list(steps), **kw}


def step(sid: str, trans: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"id": sid, "transformation": dict(trans), **kw}


def error(raw: dict[str, Any], **kw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        to_definition(raw, **kw)
    return info.value


def test_generic_format_is_detected_and_converted() -> None:
    d = to_definition(prod(step("1", MC), step("2", PROC, parents=["1"])))
    assert [s.id for s in d.steps] == ["1", "2"]
    assert FORMATS.detect({"steps": []}).name == "generic"
    renamed = to_definition(prod(step("1", MC)), ConvertOptions(name="other"))
    assert renamed.name == "other"


def test_mc_tasks_fill_the_mc_steps_without_max_tasks() -> None:
    mc = {k: v for k, v in MC.items() if k != "max_tasks"}
    d = to_definition(prod(step("1", mc), step("2", PROC, parents=[1])), ConvertOptions(mc_tasks=7))
    assert d.steps[0].transformation["max_tasks"] == 7
    assert "max_tasks" not in d.steps[1].transformation
    assert d.steps[1].parents == ["1"]  # ids written as numbers are text


def test_a_registered_format_is_detected_before_the_generic_one() -> None:
    reg = FormatRegistry()
    reg.register(FORMATS.formats["generic"])
    reg.register(
        ProductionFormat(
            "mine",
            lambda raw: "Mine" in raw,
            lambda raw, opts: {"name": opts.name, "steps": [step("a", MC)]},
        )
    )
    d = to_definition({"Mine": 1, "steps": []}, ConvertOptions(name="x"), formats=reg)
    assert (d.name, d.steps[0].id) == ("x", "a")
    with pytest.raises(InvalidInput, match="known format"):
        reg.detect({"foo": 1})


def test_dag_errors_name_the_step() -> None:
    e = error(prod(step("1", MC), step("1", PROC)))
    assert (e.detail["step"], "used twice" in e.message) == ("1", True)
    e = error(prod(step("1", MC), step("2", PROC, parents=["9"])))
    assert e.detail["step"] == "2"
    assert "unknown parent step '9'" in e.message
    e = error(
        prod(
            step("1", MC),
            step("2", PROC, parents=["1", "3"]),
            step("3", PROC, parents=["2"]),
        )
    )
    assert e.detail["step"] in ("2", "3")
    assert "cycle" in e.message
    assert e.message.startswith(f"step {e.detail['step']}:")
    e = error(prod(step("1", MC), step("2", PROC, parents=["2"])))
    assert "its own parent" in e.message


def test_bad_keys_name_the_step_and_the_key() -> None:
    e = error(prod(step("1", MC), {"id": "2", "transformation": PROC, "parent": ["1"]}))
    assert (e.detail["step"], e.detail["key"]) == ("2", "parent")
    e = error(prod(step("1", {**MC, "name": "x"})))
    assert (e.detail["step"], e.detail["key"]) == ("1", "transformation.name")
    e = error(prod(step("1", {**PROC, "InputMetaQuery": {"a": 1}})))
    assert e.detail["key"] == "transformation.InputMetaQuery"
    e = error(prod(step("1", {**MC, "output_metadata": {"prod_step_id": 3}})))
    assert "set by the production" in e.message
    e = error({"name": "p", "steps": [], "extra": 1})
    assert e.detail["key"] == "steps"
    e = error({"name": "9bad", "steps": [step("1", MC)]})
    assert e.detail["key"] == "name"


def test_topological_order_puts_parents_first() -> None:
    d = to_definition(
        prod(step("3", PROC, parents=["2"]), step("2", PROC, parents=["1"]), step("1", MC))
    )
    assert [s.id for s in topological_order(d)] == ["1", "2", "3"]


def test_compatibility_names_the_keys_that_disagree() -> None:
    d = to_definition(
        prod(
            step("1", MC),
            step("2", PROC, parents=["1"], input_query="particle=proton data_level=0"),
        )
    )
    schema = MetaSchema({"particle": "string", "data_level": "int"})
    with pytest.raises(InvalidInput) as info:
        check_compatibility(
            d.steps[1], d.steps[0], MC["output_metadata"], dataset=None, schema=schema
        )
    assert info.value.detail["keys"] == ["particle"]
    assert info.value.detail["step"] == "2"
    assert "step 1" in info.value.message
    # A dataset's query counts too.
    with pytest.raises(InvalidInput, match="data_level"):
        check_compatibility(
            d.steps[1], d.steps[0], {"data_level": 0}, dataset=parse("data_level=1"),
            schema=schema,
        )  # fmt: skip
    ok = to_definition(
        prod(step("1", MC), step("2", PROC, parents=["1"], input_query="particle=gamma"))
    )
    check_compatibility(
        ok.steps[1], ok.steps[0], MC["output_metadata"], dataset=None, schema=schema
    )
    # Values that vary per task are not checked.
    check_compatibility(
        d.steps[1], d.steps[0], {"particle": "{{run_number}}"}, dataset=None, schema=schema
    )


def test_step_definition_links_children_to_parents() -> None:
    d = to_definition(
        prod(
            step("1", MC),
            step("2", PROC, name="dl1", parents=["1"], input_query="particle=gamma", input_limit=3),
        )
    )
    raw = step_definition(d, d.steps[1], trans_id=12, parent_ids=[11], dataset=parse("site=north"))
    assert raw["name"] == "p1.2.dl1"
    assert raw["input_query"] == "particle=gamma prod_step_id in (11) site=north"
    assert raw["output_metadata"] == {"data_level": 1, "prod_step_id": 12}
    assert raw["input_limit"] == 3
    root = step_definition(d, d.steps[0], trans_id=11, parent_ids=[], dataset=None)
    assert "input_query" not in root
    assert root["output_metadata"]["prod_step_id"] == 11
