"""CTADIRAC production files (ctaprod.cta.workflow): every fixture converts into steps whose
transformations pass the generic checks; bad input names the step and the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.errors import InvalidInput
from ctaprod.core.metaquery import matches, parse_text
from ctaprod.cta import workflow
from tests.cta.conftest import DATASETS, WORKFLOWS, checked, convert, load

FULL = next(p for p in WORKFLOWS if p.name == "full_production_config.yml")
MC = next(p for p in WORKFLOWS if p.name == "mc_example.yml")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_fixture_converts_and_passes_the_transformation_checks(path: Path) -> None:
    raw = load(path)
    assert workflow.detect(raw)
    definition = convert(raw)
    assert [s["id"] for s in definition["steps"]] == [str(s["ID"]) for s in raw["ProdSteps"]]
    assert definition["base_path"] == raw["Common"]["base_path"]
    specs = checked(definition)
    for step, spec in zip(definition["steps"], specs.values(), strict=True):
        assert spec.output_lfn_template
        assert spec.job_template
        for template in spec.output_lfn_template:
            assert template.startswith(f"{definition['base_path']}/{raw['Common']['MCCampaign']}/")
        parent = step["parents"][0] if step["parents"] else None
        if parent is None:
            continue
        # A child asks for what its parent's data outputs carry.
        parent_spec = specs[parent]
        query = parse_text(step["input_query"])
        outputs = [
            parent_spec.output_metadata | extra
            for extra in parent_spec.output_file_metadata or [{}]
        ]
        runs = {"runNumber": 1}
        assert any(matches(query, meta | runs) for meta in outputs), (step["id"], outputs)


def test_full_production_links_and_metadata() -> None:
    definition = convert(load(FULL))
    steps = {s["id"]: s for s in definition["steps"]}
    assert [s["parents"] for s in steps.values()] == [[], ["1"], ["2"], ["3"]]
    assert steps["2"]["input_query"] == "nsb=1 outputType=Data"  # moon: dark
    mc = steps["1"]["transformation"]
    assert mc["type"] == "MCSimulation"
    assert (mc["max_tasks"], mc["run_number_start"]) == (10, 1)  # start_run_number 0
    assert mc["output_metadata"]["phiP"] == 180.0  # North
    assert mc["output_metadata"]["thetaP"] == 20.0
    assert mc["output_file_metadata"] == [{"nsb": 1}, {"nsb": 1, "outputType": "Log"}]
    process = steps["2"]["transformation"]
    assert process["type"] == "DataReprocessing"
    meta = process["output_metadata"]
    # Inherited from the MC step; the step's own array_layout and data_level win.
    assert {k: meta[k] for k in ("site", "particle", "phiP", "thetaP", "nsb", "sct")} == {
        "site": "LaPalma",
        "particle": "gamma-diffuse",
        "phiP": 180.0,
        "thetaP": 20.0,
        "nsb": 1,
        "sct": "False",
    }
    assert (meta["array_layout"], meta["data_level"], meta["merged"]) == ("Alpha", 2, 0)
    assert (meta["analysis_prog"], meta["analysis_prog_version"]) == ("ctapipe-process", "v0.19.2")
    merges = [steps[i]["transformation"] for i in ("3", "4")]
    assert [m["output_metadata"]["merged"] for m in merges] == [1, 2]
    assert [(m["plugin"], m["group_size"]) for m in merges] == [("Standard", 5), ("Standard", 2)]


def test_mc_task_count_comes_from_the_options() -> None:
    definition = convert(load(FULL), mc_tasks=250)
    assert definition["steps"][0]["transformation"]["max_tasks"] == 250


def test_moon_list_makes_one_output_per_nsb() -> None:
    mc = convert(load(MC))["steps"][0]["transformation"]
    assert [m.get("nsb") for m in mc["output_file_metadata"]] == [1, 1, 5, 5]
    assert [t.rsplit("Hyperarray_", 1)[-1] for t in mc["output_lfn_template"]] == [
        "dark.simtel.zst",
        "dark.log_hist.tar",
        "moon.simtel.zst",
        "moon.log_hist.tar",
    ]
    assert "--with-half-moon" in mc["job_template"]["Arguments"]


def test_dataset_metadata_is_inherited_when_the_caller_can_read_it() -> None:
    raw = load(next(p for p in WORKFLOWS if p.name.startswith("processing_merging")))
    blind = convert(raw)["steps"][0]["transformation"]
    assert "/Prod5bTest/unknown/unknown/ctapipe-process/" in blind["output_lfn_template"][0]
    assert "site" not in blind["output_metadata"]
    seen = convert(raw, datasets=DATASETS.get)["steps"][1]["transformation"]
    assert "/Prod5bTest/LaPalma/electron/ctapipe-merge/" in seen["output_lfn_template"][0]
    assert seen["output_metadata"]["nsb"] == 1


def test_input_meta_query_shorthands() -> None:
    raw = load(FULL)
    raw["ProdSteps"][1]["input_meta_query"] |= {
        "pointing_dir": "West",
        "zenith_angle": "40",
        "moon": "dark, half",
        "data_level": "DL1",
    }
    step = convert(raw)["steps"][1]
    assert step["input_query"] == (
        "data_level=1 nsb in (1,5) outputType=Data phiP=270.0 thetaP=40.0"
    )


def test_pointing_east_and_south() -> None:
    raw = load(FULL)
    for direction, phi in (("East", 90.0), ("south", 0.0)):
        raw["ProdSteps"][0]["job_config"]["pointing_dir"] = direction
        mc = convert(raw)["steps"][0]["transformation"]
        assert mc["output_metadata"]["phiP"] == phi


def test_input_limit_and_step_name() -> None:
    raw = load(next(p for p in WORKFLOWS if p.name.startswith("process_corsika")))
    step = convert(raw)["steps"][0]
    assert (step["input_limit"], step["name"]) == (1, "test_process_corsika")
    assert step["dataset"] == "CORSIKA_Test_Prod6_LaPalma_Prod6-Beta_gamma-diffuse_North_20deg_R1"


def test_type_is_case_insensitive() -> None:
    raw = load(FULL)
    raw["ProdSteps"][2]["job_config"]["type"] = "merging"
    raw["ProdSteps"][1]["job_config"]["type"] = "CTAPIPEPROCESSING"
    assert [s["transformation"]["type"] for s in convert(raw)["steps"]][1:3] == [
        "DataReprocessing",
        "Merging",
    ]


# --- bad input -------------------------------------------------------------------------------


def refused(raw: dict[str, Any], match: str, step: str | None, key: str) -> None:
    with pytest.raises(InvalidInput, match=match) as info:
        convert(raw)
    assert info.value.detail.get("key") == key, info.value.detail
    if step is not None:
        assert info.value.detail.get("step") == step
        assert str(info.value).startswith(f"step {step}: "), info.value


def changed(path: Path, step: int, where: str, **values: Any) -> dict[str, Any]:
    raw = copy.deepcopy(load(path))
    target = raw["ProdSteps"][step] if where == "step" else raw["ProdSteps"][step][where]
    for key, value in values.items():
        if value is ...:
            target.pop(key)
        else:
            target[key] = value
    return raw


def test_unknown_job_config_key_with_did_you_mean() -> None:
    raw = changed(FULL, 2, "job_config", grup_size=5)
    refused(
        raw,
        r"step 3: job_config.grup_size: unknown key \(did you mean 'group_size'\?\)",
        "3",
        "grup_size",
    )
    refused(changed(FULL, 0, "job_config", zenith=20), "did you mean 'zenith_angle'", "1", "zenith")
    # A key of another job type: MC steps have no input to limit.
    refused(changed(FULL, 0, "job_config", input_limit=3), "unknown key", "1", "input_limit")


def test_unknown_step_and_common_keys() -> None:
    refused(
        changed(FULL, 1, "step", input_meta_qeury={}),
        "did you mean 'input_meta_query'",
        "2",
        "input_meta_qeury",
    )
    raw = load(FULL)
    raw["Common"]["MCCampain"] = "x"
    refused(
        raw, r"Common.MCCampain: unknown key \(did you mean 'MCCampaign'\?\)", None, "MCCampain"
    )


def test_unknown_type_lists_the_known_ones() -> None:
    raw = changed(FULL, 1, "job_config", type="CtapipeProcess")
    with pytest.raises(InvalidInput, match=r"step 2: job_config\.type: unknown job type") as info:
        convert(raw)
    assert "CtapipeProcessing" in str(info.value)
    assert "EvnDispProcessing" in str(info.value)
    refused(changed(FULL, 1, "job_config", type=...), "no job type", "2", "type")


def test_mandatory_keys() -> None:
    for key in ("MCCampaign", "configuration_id"):
        raw = load(FULL)
        del raw["Common"][key]
        refused(raw, f"Common.{key}: mandatory", None, key)
    refused(changed(FULL, 1, "job_config", version=...), "version is mandatory", "2", "version")
    refused(
        changed(FULL, 1, "job_config", data_level=...),
        "mandatory for CtapipeProcessing",
        "2",
        "data_level",
    )
    refused(
        changed(FULL, 2, "job_config", output_extension=...),
        "mandatory for Merging",
        "3",
        "output_extension",
    )


def test_wrong_value_types_name_the_step_and_key() -> None:
    refused(
        changed(FULL, 0, "job_config", zenith_angle="abc"),
        "'abc' is not a number",
        "1",
        "zenith_angle",
    )
    refused(changed(FULL, 0, "job_config", n_shower="many"), "not a whole number", "1", "n_shower")
    refused(
        changed(FULL, 0, "job_config", pointing_dir="Up"),
        "not a pointing direction",
        "1",
        "pointing_dir",
    )
    refused(changed(FULL, 0, "job_config", moon="half, full"), "an MC step simulates", "1", "moon")
    refused(changed(FULL, 0, "job_config", site="Moon"), "not one of LaPalma, Paranal", "1", "site")
    refused(
        changed(FULL, 2, "job_config", group_size=True), "not a whole number", "3", "group_size"
    )
    refused(
        changed(FULL, 1, "input_meta_query", moon="new"),
        "not a moon condition",
        "2",
        "moon",
    )
    refused(
        changed(FULL, 1, "job_config", data_level="DL9"),
        "not a data level",
        "2",
        "data_level",
    )


def test_links_are_checked() -> None:
    refused(changed(FULL, 1, "input_meta_query", parentID=9), "no step 9", "2", "parentID")
    raw = changed(FULL, 0, "input_meta_query", parentID=4)
    with pytest.raises(InvalidInput, match=r"cycle \(1 -> 4 -> 3 -> 2 -> 1\)|cycle"):
        convert(raw)
    raw = load(FULL)
    raw["ProdSteps"][1]["ID"] = 1
    refused(raw, "ID given twice", "1", "ID")
    refused(
        changed(FULL, 1, "input_meta_query", parentID=None, moon=...),
        "needs input",
        "2",
        "input_meta_query",
    )
    refused(
        changed(FULL, 0, "input_meta_query", dataset="x"), "takes no input", "1", "input_meta_query"
    )


def test_a_production_needs_a_name() -> None:
    with pytest.raises(InvalidInput, match="has no name"):
        workflow.convert(load(FULL), None)
    assert not workflow.detect({"name": "x", "steps": []})


def test_a_child_of_a_training_asks_for_models() -> None:
    raw = load(FULL)
    raw["ProdSteps"][2]["job_config"] = {"type": "CtapipeTrainEnergy", "version": "v0.19.2"}
    raw["ProdSteps"][3]["job_config"] = {"type": "CtapipeApplyModels", "version": "v0.19.2"}
    steps = convert(raw)["steps"]
    assert steps[3]["input_query"] == "outputType=Model"
    checked(convert(raw))


# --- observation data ------------------------------------------------------------------------

NIGHT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "night_dl0_to_dl2.yml"


def test_observation_data_production() -> None:
    """No MCCampaign, a root step selecting by night: outputs inherit night, telescope and
    observation; the merge groups by night; LFNs are <base>/<site>/<night>/<prog>/..."""
    raw = load(NIGHT)
    definition = convert(raw, name="night")
    assert definition["base_path"] == "/ctao/data"
    assert "observation data" in definition["description"]
    dl1, dl2, merge = (s["transformation"] for s in definition["steps"])
    assert definition["steps"][0]["input_query"] == (
        "data_level=0 night in (20261201,20261202) outputType=Data site=LaPalma"
    )
    for spec in (dl1, dl2, merge):
        assert spec["inherit_metadata"] == ["night", "tel_id", "obs_id"]
        assert "MCCampaign" not in spec["output_metadata"]
        assert spec["output_metadata"]["site"] == "LaPalma"
        # Two nights: the path says "mixed", as for particles.
        assert spec["output_lfn_template"][0].startswith("/ctao/data/LaPalma/mixed/")
    assert (dl1["output_metadata"]["data_level"], dl2["output_metadata"]["data_level"]) == (1, 2)
    assert (merge["plugin"], merge["group_by"]) == ("ByMetadata", ["night"])
    assert merge["output_metadata"]["merged"] == 1
    specs = checked(definition)  # the generic checks, with the CTA fields
    assert specs["3"].inherit_metadata == ["night", "tel_id", "obs_id"]
    # One night: it is in the path of every step.
    raw["ProdSteps"][0]["input_meta_query"]["night"] = 20261201
    for step in convert(raw, name="night")["steps"]:
        template = step["transformation"]["output_lfn_template"][0]
        assert template.startswith("/ctao/data/LaPalma/20261201/ctapipe-"), template


def test_observation_data_needs_a_night_and_no_simulation() -> None:
    raw = load(NIGHT)
    del raw["ProdSteps"][0]["input_meta_query"]["night"]
    refused(raw, "Common.MCCampaign: mandatory .*step 1 does not", None, "MCCampaign")
    raw = load(NIGHT)
    raw["ProdSteps"].append(
        {"ID": 4, "job_config": {"type": "MCSimulation", "version": "2020-06-28"}}
    )
    refused(raw, "Common.MCCampaign: mandatory .*step 4 does not", None, "MCCampaign")
    # A simulation production keeps CTADIRAC's layout and fields.
    mc = convert(load(MC))["steps"][0]["transformation"]
    assert "inherit_metadata" not in mc
    assert mc["output_metadata"]["MCCampaign"]
