"""Transformation definitions (ctaprod.core.transformations, trans_types): the canonical model,
one clear error per bad input (the issue's "Bad input" list), rendering a task's job, and
definitions written in the style of CTADIRAC's production files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctaprod.core.errors import InvalidInput
from ctaprod.core.jobdesc import SubmissionLimits
from ctaprod.core.metaquery import parse_text
from ctaprod.core.trans_types import TYPES, TaskKind, TransformationType, TypeRegistry
from ctaprod.core.transformations import (
    TransformationSpec,
    check_definition,
    check_transformation_name,
    job_group,
    load_definition,
    render_task_job,
)
from tests.fixtures import fixture_dir

# The CTA metadata fields (DESIGN.md section 7) as the catalog would declare them; "moon" is
# a CTADIRAC shorthand some production files query directly.
FIELDS = {
    "MCCampaign": "string", "site": "string", "particle": "string", "array_layout": "string",
    "phiP": "float", "thetaP": "float", "sct": "string", "outputType": "string",
    "data_level": "int", "configuration_id": "int", "merged": "int", "runNumber": "int",
    "nsb": "int", "div_ang": "float", "split": "string", "moon": "string",
    "tel_sim_prog": "string", "tel_sim_prog_version": "string", "analysis_prog": "string",
    "analysis_prog_version": "string", "created": "datetime",
}  # fmt: skip
BASES = ["/ctao/MC", "/ctao/user/p/prodmanager"]
LIMITS = SubmissionLimits()

PROCESSING: dict[str, Any] = {
    "name": "Prod6_gamma_DL0_to_DL2",
    "type": "Processing",
    "description": "ctapipe-process on the gamma DL0 files",
    "input_query": "MCCampaign=Prod6 particle=gamma data_level=0 thetaP=20",
    "plugin": "Standard",
    "group_size": 5,
    "job_template": {
        "Executable": "ctapipe-process",
        "Arguments": "--input {{input_lfns}} --output {{output_name}}",
        "CPUTime": 7200,
        "Tags": ["ctapipe"],
    },
    "output_metadata": {"data_level": 2, "analysis_prog": "ctapipe-process"},
    "output_lfn_template": (
        "/ctao/MC/Prod6/{{transformation_id}}/Data/{{input_stem}}_{{task_id}}.DL2.h5"
    ),
    "max_errors": 3,
}
MC: dict[str, Any] = {
    "name": "Prod6_LaPalma_gamma_MC",
    "type": "MCSimulation",
    "max_tasks": 1000,
    "run_number_start": 2000,
    "job_template": {"Executable": "corsika_simtel", "Arguments": "--run {{run_number}}"},
    "output_lfn_template": [
        "/ctao/MC/Prod6/{{transformation_id}}/Data/{{run_number // 1000 : 3}}xxx/"
        "run{{run_number:6}}.simtel.zst",
        "/ctao/MC/Prod6/{{transformation_id}}/Log/{{run_number // 1000 : 3}}xxx/"
        "run{{run_number:6}}.log.tgz",
    ],
    "output_metadata": {"runNumber": "{{run_number}}", "MCCampaign": "Prod6", "data_level": -3},
}
REPLICATION: dict[str, Any] = {
    "name": "Replicate_DL2_to_CNAF",
    "type": "Replication",
    "input_query": {"data_level": 2, "MCCampaign": "Prod6"},
    "parameters": {"target_ses": ["CNAF-Disk", "DESY-ZN-Disk"]},
}


def check(raw: dict[str, Any], **kwargs: Any) -> TransformationSpec:
    return check_definition(raw, fields=FIELDS, bases=BASES, limits=LIMITS, **kwargs)


def refused(raw: dict[str, Any], match: str, key: str | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput, match=match) as info:
        check(raw)
    if key is not None:
        assert info.value.detail["key"] == key, info.value
        assert str(info.value).startswith(key), info.value  # the message names the key
    return info.value


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --- good definitions ------------------------------------------------------------------------


def test_processing_is_canonical() -> None:
    spec = check(PROCESSING)
    assert spec.type == "Processing"
    assert spec.input_query == "MCCampaign=Prod6 data_level=0 particle=gamma thetaP=20.0"
    assert (spec.plugin, spec.group_size, spec.max_errors) == ("Standard", 5, 3)
    assert spec.output_lfn_template == [PROCESSING["output_lfn_template"]]
    assert spec.run_number_start is None
    assert spec.per_input_outputs() == [True]
    # The canonical spec passes again, unchanged.
    assert check(spec.model_dump()) == spec


@pytest.mark.parametrize("raw", [PROCESSING, MC, REPLICATION], ids=["proc", "mc", "rep"])
def test_the_canonical_spec_round_trips_through_json(raw: dict[str, Any]) -> None:
    spec = check(raw)
    stored = json.loads(spec.model_dump_json())  # as the database will keep it
    assert check(stored) == spec
    assert TransformationSpec.model_validate(stored) == spec
    assert "input_query" in TransformationSpec.model_json_schema()["properties"]


def test_defaults_come_from_the_type_and_plugin() -> None:
    spec = check(with_(PROCESSING, plugin=..., group_size=...))
    assert (spec.plugin, spec.group_size) == ("Standard", 1)
    rep = check(REPLICATION)
    assert (rep.plugin, rep.group_size) == ("Broadcast", 1)
    assert rep.input_query == "MCCampaign=Prod6 data_level=2"
    assert rep.job_template is None
    assert TYPES.get("replication").tasks is TaskKind.REQUEST


def test_mc_simulation() -> None:
    spec = check(MC)
    assert spec.input_query is None
    assert spec.plugin is None
    assert spec.group_size is None
    assert spec.run_number_of(1) == 2000
    assert spec.run_number_of(11) == 2010
    assert check(with_(MC, run_number_start=...)).run_number_start == 1


def test_by_size_takes_units_and_by_metadata_keys() -> None:
    spec = check(with_(PROCESSING, plugin="bysize", group_size="10 GB"))
    assert (spec.plugin, spec.group_size) == ("BySize", 10**10)
    assert check(with_(PROCESSING, plugin="BySize", group_size="2GiB")).group_size == 2**31
    spec = check(with_(PROCESSING, plugin="ByMetadata", group_by="runNumber"))
    assert spec.group_by == ["runNumber"]


# --- the bad inputs, each a clear error naming the key ---------------------------------


def test_undeclared_query_field() -> None:
    err = refused(
        with_(PROCESSING, input_query="particle=gamma thetaQ=20"), "thetaQ", "input_query"
    )
    assert "not declared" in str(err)
    assert "thetaP" in str(err)


def test_query_value_of_the_wrong_type() -> None:
    refused(with_(PROCESSING, input_query="data_level=two"), "not a valid int", "input_query")
    refused(with_(PROCESSING, input_query={"thetaP": {">": "x"}}), "float", "input_query")
    refused(with_(PROCESSING, input_query="particle=="), "syntax error", "input_query")


def test_input_query_required_or_refused_by_type() -> None:
    refused(with_(PROCESSING, input_query=...), "needs an input query", "input_query")
    refused(with_(PROCESSING, input_query="  "), "needs an input query", "input_query")
    refused(with_(PROCESSING, input_query="{}"), "needs an input query", "input_query")
    refused(with_(PROCESSING, input_query={"dataset": ""}), "needs an input query", "input_query")
    refused(with_(MC, input_query="particle=gamma"), "no input files", "input_query")


def test_unknown_type_and_plugin() -> None:
    refused(with_(PROCESSING, type="Reprocessing"), "unknown transformation type", "type")
    refused(with_(PROCESSING, plugin="ByRun"), "unknown grouping plugin 'ByRun'", "plugin")
    refused(with_(PROCESSING, plugin="Broadcast", group_size=1), "not Broadcast", "plugin")
    refused(with_(MC, plugin="Standard"), "no input files", "plugin")


@pytest.mark.parametrize(
    ("plugin", "size", "match"),
    [
        ("Standard", 0, "greater than or equal to 1"),
        ("Standard", 10_001, "out of range"),
        ("ByMetadata", 20_000, "out of range"),
        ("BySize", 2**51, "out of range"),
        ("BySize", "lots", "is not a size"),
        ("Standard", True, "not a boolean"),
        ("Standard", 2.5, "fractional part"),
    ],
)
def test_group_size_out_of_range(plugin: str, size: object, match: str) -> None:
    extra = {"group_by": ["runNumber"]} if plugin == "ByMetadata" else {}
    refused(with_(PROCESSING, plugin=plugin, group_size=size, **extra), match, "group_size")


def test_by_size_needs_a_size_and_by_metadata_keys() -> None:
    refused(with_(PROCESSING, plugin="BySize", group_size=...), "needs a group size", "group_size")
    refused(with_(PROCESSING, plugin="ByMetadata"), "needs keys", "group_by")
    refused(with_(PROCESSING, group_by=["runNumber"]), "takes no keys", "group_by")
    refused(with_(PROCESSING, plugin="ByMetadata", group_by=["run"]), "not declared", "group_by")


@pytest.mark.parametrize(
    ("template", "match", "key"),
    [
        ({"Arguments": "x"}, "Executable", "job_template"),
        ({"Executable": "x", "CPUTime": 0}, "CPUTime", "job_template"),
        ({"Executable": "x", "Priority": 99}, "Priority", "job_template"),
        ({"Exectuable": "x"}, "did you mean 'Executable'", "job_template"),
        ({"Executable": "x", "InputData": ["/a"]}, "set by the transformation", None),
        ({"Executable": "x", "OutputData": ["a"]}, "set by the transformation", None),
        ({"Executable": "x", "JobGroup": "g"}, "set by the transformation", None),
        ({"Executable": "x", "Parameters": 3}, "a task is one job", None),
        ({"Executable": "x {{nope}}"}, "unknown placeholder", "job_template.Executable"),
        (
            {"Executable": "x", "Arguments": "{{run_number}}"},
            "cannot be used here",
            "job_template.Arguments",
        ),
    ],
)
def test_job_template_that_is_not_a_job(template: dict[str, Any], match: str, key: str) -> None:
    err = refused(with_(PROCESSING, job_template=template), match)
    assert str(err).startswith(key or "job_template.")


def test_job_template_placeholders_need_their_values() -> None:
    no_outputs = with_(
        PROCESSING,
        output_lfn_template=...,
        job_template={"Executable": "x", "Arguments": "{{output_lfn}}"},
    )
    refused(no_outputs, "cannot be used here", "job_template.Arguments")
    mc = with_(MC, job_template={"Executable": "x", "Arguments": "{{input_lfns}}"})
    refused(mc, "cannot be used here", "job_template.Arguments")
    spec = check(
        with_(PROCESSING, output_lfn_template=..., job_template={"Executable": "validate"})
    )
    job = render_task_job(spec, transformation_id=1, task_id=1, input_lfns=["/a"], limits=LIMITS)
    assert job.output_data == []


def test_job_template_required_for_jobs_refused_for_requests() -> None:
    refused(with_(PROCESSING, job_template=...), "give the job description", "job_template")
    refused(with_(REPLICATION, job_template={"Executable": "x"}), "requests", "job_template")
    refused(
        with_(REPLICATION, output_lfn_template="/ctao/MC/{{task_id}}"),
        "requests",
        "output_lfn_template",
    )


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("/ctao/MC/../../etc/{{task_id}}.h5", "'..'"),
        ("/ctao/data/{{task_id}}.h5", "not under the allowed areas"),
        ("relative/{{task_id}}.h5", "absolute"),
        ("/ctao/MC/Prod6/output.DL2.h5", "same LFN to several tasks"),
        ("/ctao/MC/Prod6/{{input_stem}}.DL2.h5", "same LFN to several tasks"),
        ("/ctao/MC/Prod6/{{task_id // 100}}.DL2.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{output_lfn}}", "cannot be used here"),
    ],
)
def test_output_lfn_template_escaping_or_colliding(template: str, match: str) -> None:
    refused(with_(PROCESSING, output_lfn_template=template), match, "output_lfn_template")


def test_two_output_templates_must_not_collide() -> None:
    same_end = [
        "/ctao/MC/a/{{task_id}}.h5",
        "/ctao/MC/b/x{{task_id}}.h5",
    ]
    refused(with_(PROCESSING, output_lfn_template=same_end), "same LFN", "output_lfn_template")
    nested = ["/ctao/MC/a_{{task_id}}.DL2.h5", "/ctao/MC/a_{{task_id}}.h5"]
    refused(with_(PROCESSING, output_lfn_template=nested), "overlap", "output_lfn_template")


def test_output_metadata() -> None:
    refused(
        with_(PROCESSING, output_metadata={"level": 2}), "not declared", "output_metadata.level"
    )
    refused(
        with_(PROCESSING, output_metadata={"data_level": "two"}),
        "not a valid int",
        "output_metadata.data_level",
    )
    refused(
        with_(PROCESSING, output_metadata={"runNumber": "{{input_name}}"}),
        "cannot be used here",
        "output_metadata.runNumber",
    )
    refused(
        with_(PROCESSING, output_metadata={"split": ["a", "b"]}),
        "one number, text or date",
        "output_metadata.split",
    )


@pytest.mark.parametrize(
    "name",
    ["", "1234", "9lives", "has space", "a/b", "é", "x" * 129, "semi;colon", "-dash"],
)
def test_name_charset(name: str) -> None:
    refused(with_(PROCESSING, name=name), "transformation name", "name")


def test_good_names() -> None:
    for name in ["a", "Prod5b_LaPalma-gamma.v2+1", "x" * 128]:
        assert check_transformation_name(name) == name


def test_unknown_and_doubled_keys() -> None:
    refused(
        with_(PROCESSING, groupsise=3),
        r"groupsise: unknown key \(did you mean 'group_size'",
        "groupsise",
    )
    refused(with_(PROCESSING, owner="me"), "unknown key", "owner")
    refused(with_(PROCESSING, GroupSize=3), "given twice", "group_size")


def test_max_tasks_errors_and_run_numbers() -> None:
    refused(with_(MC, max_tasks=...), "needs a maximum number of tasks", "max_tasks")
    refused(with_(MC, max_tasks=0), "greater than or equal to 1", "max_tasks")
    refused(with_(PROCESSING, max_errors=0), "greater than or equal to 1", "max_errors")
    refused(with_(PROCESSING, run_number_start=5), "no run numbers", "run_number_start")
    refused(with_(MC, run_number_start=2**31 - 10), "above", "run_number_start")
    assert check(with_(PROCESSING, max_tasks=10)).max_tasks == 10


def test_several_pydantic_errors_are_all_named() -> None:
    err = refused(with_(PROCESSING, max_errors="x", description=5), "description")
    assert "max_errors" in str(err)
    assert len(err.detail["errors"]) == 2


def test_request_parameters() -> None:
    refused(with_(REPLICATION, parameters={}), "target_ses", "parameters.target_ses")
    refused(with_(REPLICATION, parameters={"target_ses": []}), "target_ses")
    assert check(with_(REPLICATION, parameters={"target_ses": "A,B"})).plugin == "Broadcast"


def test_types_registry_takes_extensions() -> None:
    registry = TypeRegistry([TYPES.get("Processing")])
    registry.register(
        TransformationType(
            "DataReprocessing", True, TaskKind.JOB, frozenset({"Standard"}), "Standard"
        )
    )
    spec = check(with_(PROCESSING, type="datareprocessing", plugin=...), types=registry)
    assert spec.type == "DataReprocessing"
    with pytest.raises(InvalidInput, match="unknown transformation type 'Merging'"):
        check(with_(PROCESSING, type="Merging"), types=registry)
    with pytest.raises(ValueError, match="registered already"):
        registry.register(TYPES.get("Processing"))
    with pytest.raises(ValueError, match="default plugin"):
        TransformationType("Bad", True, TaskKind.JOB, frozenset({"Standard"}), "BySize")


# --- rendering -------------------------------------------------------------------------------


def test_render_processing_task() -> None:
    spec = check(PROCESSING)
    inputs = ["/ctao/MC/Prod6/DL0/run100.simtel.zst", "/ctao/MC/Prod6/DL0/run101.simtel.zst"]
    job = render_task_job(spec, transformation_id=12, task_id=3, input_lfns=inputs, limits=LIMITS)
    assert job.input_data == inputs
    assert job.output_data == [
        "LFN:/ctao/MC/Prod6/12/Data/run100.simtel_3.DL2.h5",
        "LFN:/ctao/MC/Prod6/12/Data/run101.simtel_3.DL2.h5",
    ]
    assert job.arguments == f"--input {' '.join(inputs)} --output run100.simtel_3.DL2.h5"
    assert job.job_group == job_group(12) == "00000012"
    assert job.job_name == "00000012_00000003"
    assert job.job_type == "Processing"
    assert job.output_metadata == {"data_level": 2, "analysis_prog": "ctapipe-process"}
    assert job.tags == ["ctapipe"]


def test_render_mc_task() -> None:
    spec = check(MC)
    run = spec.run_number_of(3)  # the third task made; its ID is the database's
    job = render_task_job(
        spec, transformation_id=5, task_id=903, run_number=run, input_lfns=[], limits=LIMITS
    )
    assert job.arguments == "--run 2002"
    assert job.input_data == []
    assert job.output_data == [
        "LFN:/ctao/MC/Prod6/5/Data/002xxx/run002002.simtel.zst",
        "LFN:/ctao/MC/Prod6/5/Log/002xxx/run002002.log.tgz",
    ]
    assert job.output_metadata == {"runNumber": 2002, "MCCampaign": "Prod6", "data_level": -3}
    assert job.job_name == "00000005_00000903"
    # %j (the job ID, known later) is left for substitute_job_id.
    spec = check(with_(MC, job_template={"Executable": "x", "Arguments": "%j {{task_id}}"}))
    job = render_task_job(
        spec, transformation_id=5, task_id=3, run_number=1, input_lfns=[], limits=LIMITS
    )
    assert job.arguments == "%j 3"
    # A run number is required for MCSimulation, refused for others.
    with pytest.raises(ValueError, match="need run numbers"):
        render_task_job(spec, transformation_id=5, task_id=3, input_lfns=[], limits=LIMITS)
    with pytest.raises(ValueError, match="have no run numbers"):
        render_task_job(
            check(PROCESSING),
            transformation_id=5,
            task_id=3,
            run_number=4,
            input_lfns=["/a/b"],
            limits=LIMITS,
        )


def test_render_refuses_a_task_writing_one_lfn_twice() -> None:
    spec = check(PROCESSING)
    inputs = ["/ctao/a/run1.simtel.zst", "/ctao/b/run1.simtel.zst"]  # same name
    with pytest.raises(InvalidInput, match="twice") as info:
        render_task_job(spec, transformation_id=1, task_id=1, input_lfns=inputs, limits=LIMITS)
    assert info.value.detail["key"] == "output_lfn_template"


def test_render_respects_the_submission_limits() -> None:
    spec = check(with_(PROCESSING, plugin="BySize", group_size="1 TB"))
    inputs = [f"/ctao/in/f{i}.zst" for i in range(3)]
    with pytest.raises(InvalidInput, match="InputData") as info:
        render_task_job(
            spec,
            transformation_id=1,
            task_id=1,
            input_lfns=inputs,
            limits=SubmissionLimits(max_input_data=2),
        )
    assert info.value.detail["key"] == "job_template"


# --- CTADIRAC-style files --------------------------------------------------------------------

CTADIRAC_STYLE = """
# A Processing step as a CTADIRAC user writes it, with DIRAC's key spellings.
TransformationName: Prod5b_Alpha_DL0_to_DL2
Type: Processing
LongDescription: ctapipe-process, Alpha layout
input_meta_query:
  parentID:
  dataset:
  MCCampaign: PROD5b
  array_layout: Alpha
  site: Paranal
  particle: gamma-diffuse
  thetaP: 20.0
  phiP: 180.0
  data_level: 0
  outputType: Data
  configuration_id: 8
  merged: 0
Plugin: Standard
GroupSize: 5
MaxResetCounter: 4
job:
  Executable: ctapipe-process
  Arguments: -c v3/dl0_to_dl2.yml --input {{input_lfns}} --output {{output_name}}
  JobType: CtapipeProcessing
  CPUTime: 36000
OutputMetaData:
  data_level: 2
  analysis_prog: ctapipe-process
  analysis_prog_version: v0.19.2
output_lfn_template: "/ctao/MC/PROD5b/Paranal/gamma-diffuse/ctapipe-process/\\
  {{transformation_id}}/Data/{{task_id // 1000 : 3}}xxx/{{input_stem}}_{{task_id}}.DL2.h5"
"""


def test_ctadirac_style_definition() -> None:
    spec = check(load_definition(CTADIRAC_STYLE))
    assert spec.name == "Prod5b_Alpha_DL0_to_DL2"
    assert (spec.plugin, spec.group_size, spec.max_errors) == ("Standard", 5, 4)
    query = parse_text(spec.input_query or "")
    assert "parentID" not in query.fields
    assert "dataset" not in query.fields
    assert len(query.conditions) == 10
    job = render_task_job(
        spec, transformation_id=321, task_id=1234, input_lfns=["/ctao/x/a.zst"], limits=LIMITS
    )
    assert job.job_type == "CtapipeProcessing"  # the template's JobType wins
    assert job.output_data == [
        "LFN:/ctao/MC/PROD5b/Paranal/gamma-diffuse/ctapipe-process/321/Data/001xxx/a_1234.DL2.h5"
    ]


def test_load_definition_errors() -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_definition("a: [")
    with pytest.raises(InvalidInput, match="mapping"):
        load_definition("- a\n- b\n")


def _workflow_steps() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((fixture_dir("ctadirac") / "workflows").glob("*.yml")):
        doc = yaml.safe_load(Path(path).read_text())
        for step in doc["ProdSteps"]:
            out.append((f"{path.stem}#{step['ID']}", step))
    return out


@pytest.mark.parametrize(
    ("where", "step"), _workflow_steps(), ids=[w for w, _ in _workflow_steps()]
)
def test_ctadirac_workflow_steps_as_transformations(where: str, step: dict[str, Any]) -> None:
    """Each real ProdSteps step, turned into a transformation definition: its query,
    type and group size as written. A step that needs its production (a parent step or a
    named dataset) is refused with an error naming that key."""
    config = step["job_config"]
    query = step["input_meta_query"]
    mc = config["type"] == "MCSimulation"
    raw: dict[str, Any] = {
        "name": f"step_{step['ID']}",
        "type": "MCSimulation"
        if mc
        else "Merging"
        if config["type"] == "Merging"
        else "Processing",
        "job_template": {"Executable": "run_step", "Arguments": "{{task_id}}"},
        "output_lfn_template": "/ctao/MC/out/{{transformation_id}}/f_{{task_id}}.h5",
    }
    if mc:
        raw |= {"max_tasks": 10, "start_run_number": config.get("start_run_number") or None}
        raw = {k: v for k, v in raw.items() if v is not None}
    else:
        raw |= {"input_meta_query": query, "group_size": config.get("group_size", 1)}
    needs_production = not mc and (query.get("parentID") or query.get("dataset"))
    if needs_production:
        key = "parentID" if query.get("parentID") else "dataset"
        with pytest.raises(InvalidInput, match="production") as info:
            check(raw)
        assert info.value.detail["key"] == f"input_query.{key}"
        return
    if not mc and config.get("group_size", 1) > LIMITS.max_input_data:
        with pytest.raises(InvalidInput, match="InputData"):
            check(raw)
        return
    spec = check(raw)
    assert spec.type == raw["type"]


@pytest.mark.parametrize("path", sorted((fixture_dir("ctadirac") / "datasets").glob("*.json")))
def test_ctadirac_dataset_queries_as_input(path: Path) -> None:
    spec = check(with_(PROCESSING, input_query=path.read_text()))
    assert "tel_sim_prog=sim_telarray" in (spec.input_query or "")


def test_the_example_of_the_docs_is_valid() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "transformations.md").read_text()
    example = text.split("## Example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    spec = check(load_definition(example))
    assert spec.name == "Prod6_gamma_DL0_to_DL2"
    job = render_task_job(
        spec, transformation_id=7, task_id=1, input_lfns=["/ctao/in/r1.zst"], limits=LIMITS
    )
    assert job.output_data == ["LFN:/ctao/MC/Prod6/7/Data/r1_1.DL2.h5"]


# --- per-output metadata ---------------------------------------------------------------------


def test_output_file_metadata_is_rendered_per_output() -> None:
    spec = check(
        with_(
            MC,
            output_file_metadata=[{"nsb": 1, "outputType": "Data"}, {"outputType": "Log"}],
        )
    )
    job = render_task_job(
        spec, transformation_id=5, task_id=9, run_number=2002, input_lfns=[], limits=LIMITS
    )
    data, log = (o.removeprefix("LFN:") for o in job.output_data)
    assert job.output_file_metadata == {
        data: {"nsb": 1, "outputType": "Data"},
        log: {"outputType": "Log"},
    }
    assert job.metadata_of(data) == {
        "runNumber": 2002, "MCCampaign": "Prod6", "data_level": -3, "nsb": 1, "outputType": "Data"
    }  # fmt: skip
    # Placeholders render per task; an empty mapping adds nothing.
    spec = check(with_(MC, output_file_metadata=[{"runNumber": "{{run_number}}"}, {}]))
    job = render_task_job(
        spec, transformation_id=5, task_id=9, run_number=2003, input_lfns=[], limits=LIMITS
    )
    assert list(job.output_file_metadata.values()) == [{"runNumber": 2003}]


def test_output_file_metadata_per_input_template() -> None:
    spec = check(with_(PROCESSING, output_file_metadata=[{"split": "train"}]))
    job = render_task_job(
        spec,
        transformation_id=12,
        task_id=3,
        input_lfns=["/ctao/MC/in/a.simtel.zst", "/ctao/MC/in/b.simtel.zst"],
        limits=LIMITS,
    )
    assert job.output_file_metadata == {
        "/ctao/MC/Prod6/12/Data/a.simtel_3.DL2.h5": {"split": "train"},
        "/ctao/MC/Prod6/12/Data/b.simtel_3.DL2.h5": {"split": "train"},
    }


def test_output_file_metadata_is_checked_like_output_metadata() -> None:
    refused(
        with_(MC, output_file_metadata=[{"nsb": 1}]),
        "2 output LFN templates",
        "output_file_metadata",
    )
    refused(
        with_(MC, output_file_metadata=[{"nsbb": 1}, {}]),
        "not declared",
        "output_file_metadata[0].nsbb",
    )
    refused(
        with_(MC, output_file_metadata=[{}, {"nsb": "dark"}]),
        "not a valid int",
        "output_file_metadata[1].nsb",
    )
    refused(
        with_(MC, output_file_metadata=[{"runNumber": "{{input_name}}"}, {}]),
        "cannot be used here",
        "output_file_metadata[0].runNumber",
    )
    refused(
        with_(REPLICATION, output_file_metadata=[{"nsb": 1}]),
        "requests, not jobs",
        "output_file_metadata",
    )
    refused(
        with_(MC, job_template={"Executable": "x", "OutputFileMetadata": "{}"}),
        "set by the transformation",
        "job_template.OutputFileMetadata",
    )


# --- metadata inherited from the inputs ------------------------------------------------------


MERGE: dict[str, Any] = {
    **PROCESSING,
    "name": "merge_per_night",
    "type": "Merging",
    "output_lfn_template": "/ctao/MC/merged/{{transformation_id}}/night_{{task_id}}.DL2.h5",
}


def test_inherited_metadata_per_input_output() -> None:
    spec = check(with_(PROCESSING, inherit_metadata=["runNumber", "split"]))
    assert spec.inherit_metadata == ["runNumber", "split"]
    inputs = ["/ctao/MC/in/a.simtel.zst", "/ctao/MC/in/b.simtel.zst"]
    job = render_task_job(
        spec,
        transformation_id=12,
        task_id=3,
        input_lfns=inputs,
        limits=LIMITS,
        input_metadata=[{"runNumber": 7, "split": "test"}, {"runNumber": 8}],
    )
    assert job.output_file_metadata == {
        "/ctao/MC/Prod6/12/Data/a.simtel_3.DL2.h5": {"runNumber": 7, "split": "test"},
        "/ctao/MC/Prod6/12/Data/b.simtel_3.DL2.h5": {"runNumber": 8},
    }
    # Without the inputs' metadata (a dry run), nothing is inherited.
    job = render_task_job(spec, transformation_id=12, task_id=3, input_lfns=inputs, limits=LIMITS)
    assert job.output_file_metadata == {}


def test_inherited_metadata_of_a_task_output_is_what_all_inputs_share() -> None:
    spec = check(with_(MERGE, inherit_metadata=["runNumber", "split", "MCCampaign"]))
    job = render_task_job(
        spec,
        transformation_id=4,
        task_id=9,
        input_lfns=["/ctao/MC/in/a.h5", "/ctao/MC/in/b.h5", "/ctao/MC/in/c.h5"],
        limits=LIMITS,
        input_metadata=[
            {"runNumber": 1, "split": "test", "MCCampaign": "Prod6"},
            {"runNumber": 2, "split": "test", "MCCampaign": "Prod6"},
            {"runNumber": 3, "split": "test"},
        ],
    )
    assert job.output_file_metadata == {"/ctao/MC/merged/4/night_9.DL2.h5": {"split": "test"}}


def test_inherited_metadata_is_checked() -> None:
    refused(with_(PROCESSING, inherit_metadata=["nigth"]), "not declared", "inherit_metadata")
    refused(
        with_(PROCESSING, inherit_metadata=["data_level"]),
        "also set by output_metadata",
        "inherit_metadata",
    )
    refused(with_(MC, inherit_metadata=["runNumber"]), "no input", "inherit_metadata")
    refused(
        with_(REPLICATION, inherit_metadata=["runNumber"]),
        "are requests",
        "inherit_metadata",
    )
    assert check(with_(PROCESSING, InheritMetadata="split")).inherit_metadata == ["split"]
