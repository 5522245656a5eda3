"""The CTA job types (ctaprod.cta.jobtypes): one task of each rendered as the transformation
system renders it (command line, output names, metadata, LFN layout), then run for real with
the stand-ins in a job directory: the job's declared outputs are what the programs write."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.errors import InvalidInput
from ctaprod.core.jobs import JobDescription
from ctaprod.core.transformations import render_task_job
from ctaprod.cta import workflow
from ctaprod.cta.settings import CtaSettings
from tests.cta.conftest import LIMITS, checked, options

pytestmark = pytest.mark.timeout(120)
COMMON = {"MCCampaign": "Prod6Test", "configuration_id": 16, "base_path": "/ctao/MC/test"}
RUNNABLE = CtaSettings(software="standin", python=sys.executable)
INPUT_META = {
    "site": "Paranal", "particle": "gamma", "phiP": 180.0, "thetaP": 20.0, "nsb": 1,
    "array_layout": "Alpha", "sct": "False", "data_level": 1, "merged": 0, "split": "train",
}  # fmt: skip


def production(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"ProdSteps": list(steps), "Common": dict(COMMON)}


def from_dataset(sid: int, job_config: dict[str, Any]) -> dict[str, Any]:
    return {"ID": sid, "input_meta_query": {"dataset": "ds"}, "job_config": job_config}


def render(raw: dict[str, Any], step: str, inputs: list[str], task: int = 1234) -> JobDescription:
    definition = workflow.convert(raw, options(datasets={"ds": INPUT_META}.get), settings=RUNNABLE)
    spec = checked(definition)[step]
    return render_task_job(
        spec,
        transformation_id=42,
        task_id=task,
        input_lfns=inputs,
        run_number=spec.run_number_of(7),
        limits=LIMITS,
    )


def run_job(job: JobDescription, tmp_path: Path, inputs: dict[str, bytes]) -> dict[str, bytes]:
    """Run the job's command line as the job wrapper does, in a fresh job directory holding
    its input files; the bytes of each declared output."""
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
    env = {"PATH": "/usr/bin:/bin", **job.payload_environment()}
    argv = [job.executable, *shlex.split(job.arguments)]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = [lfn.removeprefix("LFN:").rsplit("/", 1)[-1] for lfn in job.output_data]
    return {name: (tmp_path / name).read_bytes() for name in names}


def lfns(job: JobDescription) -> list[str]:
    return [o.removeprefix("LFN:") for o in job.output_data]


def test_mc_simulation(tmp_path: Path) -> None:
    mc = {
        "type": "MCSimulation", "version": "2024-02-05", "site": "Paranal", "particle": "proton",
        "pointing_dir": "South", "zenith_angle": 40, "n_shower": 50, "moon": "dark, half, full",
        "sct": "all", "magic": False, "start_run_number": 1000,
    }  # fmt: skip
    job = render(production({"ID": 1, "input_meta_query": {}, "job_config": mc}), "1", [])
    args = shlex.split(job.arguments)
    program = args[args.index("--") + 1 :]
    assert program == [
        "dirac_prod_run", "--start_run", "0", "--run-number", "1007", "--with-all-scts",
        "--with-full-moon", "Paranal", "proton", "South", "40",
    ]  # fmt: skip
    assert args[args.index("--version") + 1] == "2024-02-05-sc"  # the SCT build
    assert job.environment == {"NSHOW": "50"}
    base = "/ctao/MC/test/Prod6Test/Paranal/proton/sim_telarray/42"
    name = "run001007_proton_40deg_0deg_Paranal_Prod6-Hyperarray"
    assert lfns(job) == [
        f"{base}/{kind}/001xxx/{name}_{tag}.{ext}"
        for tag in ("dark", "moon", "fullmoon")
        for kind, ext in (("Data", "simtel.zst"), ("Log", "log_hist.tar"))
    ]
    assert job.output_metadata == {
        "MCCampaign": "Prod6Test", "configuration_id": 16, "tel_sim_prog": "sim_telarray",
        "tel_sim_prog_version": "2024-02-05", "outputType": "Data",
        "array_layout": "Prod6-Hyperarray", "site": "Paranal", "particle": "proton",
        "phiP": 0.0, "thetaP": 40.0, "sct": "True", "data_level": -1, "merged": 0,
        "runNumber": 1007,
    }  # fmt: skip
    data = lfns(job)[::2]
    assert [job.metadata_of(lfn)["nsb"] for lfn in data] == [1, 5, 19]
    assert {job.metadata_of(lfn)["outputType"] for lfn in lfns(job)[1::2]} == {"Log"}
    outputs = run_job(job, tmp_path, {})
    assert len(outputs) == 6
    assert all(len(b) == 4096 for n, b in outputs.items() if n.endswith(".zst"))


def test_simpipe(tmp_path: Path) -> None:
    step = {
        "type": "SimPipe", "version": "v0.9", "simpipe_config": "prod.yml", "site": "LaPalma",
        "particle": "gamma", "zenith_angle": 20, "azimuth_angle": 0, "n_shower": 10,
    }  # fmt: skip
    job = render(production({"ID": 1, "job_config": step}), "1", [])
    assert job.output_metadata["tel_sim_prog"] == "simpipe"
    assert job.output_metadata["phiP"] == 180.0  # simtools' azimuth 0 is North
    assert "/LaPalma/gamma/simpipe/42/Data/000xxx/run000007_" in lfns(job)[0]
    outputs = run_job(job, tmp_path, {"prod.yml": b"site: North\n"})
    assert len(outputs) == 2


def test_simpipe_takes_the_pointing_as_mc_simulation_steps_write_it() -> None:
    step = {
        "type": "SimPipe", "version": "v0.9", "simpipe_config": "prod.yml", "site": "Paranal",
        "particle": "proton", "zenith_angle": 40, "pointing_dir": "South",
    }  # fmt: skip
    job = render(production({"ID": 1, "job_config": step}), "1", [])
    assert (job.output_metadata["phiP"], job.output_metadata["thetaP"]) == (0.0, 40.0)
    with pytest.raises(InvalidInput, match="pointing_dir or azimuth_angle, not both"):
        render(production({"ID": 1, "job_config": {**step, "azimuth_angle": 0}}), "1", [])


@pytest.mark.parametrize(
    ("config", "program", "meta"),
    [
        (
            {"type": "CtapipeProcessing", "version": "v0.19.2", "data_level": "DL2",
             "output_extension": "DL2.h5", "options": "-c v3/dl0_to_dl2.yml", "group_size": 2},
            ["ctapipe-process", "--input", "@IN@", "--output", "@OUT@", "-c",
             "v3/dl0_to_dl2.yml"],
            {"analysis_prog": "ctapipe-process", "data_level": 2, "merged": 0},
        ),
        (
            {"type": "EvnDispProcessing", "version": "v5", "group_size": 2},
            ["evndisp", "-sourcefile", "@IN@", "-outputfile", "@OUT@"],
            {"analysis_prog": "evndisp", "data_level": 1, "merged": 0},
        ),
        (
            {"type": "SimTelProcessing", "version": "2024-02-05", "moon": "half",
             "group_size": 2},
            ["sim_telarray", "-C", "nsb_scaling_factor=5", "-o", "@OUT@", "@IN@"],
            {"tel_sim_prog": "sim_telarray", "data_level": -1, "nsb": 5},
        ),
        (
            {"type": "CtapipeApplyModels", "version": "v0.19.2", "group_size": 2,
             "options": "--reconstructor energy.pkl", "input_sandbox": "LFN:/m/energy.pkl"},
            ["ctapipe-apply-models", "--input", "@IN@", "--output", "@OUT@",
             "--reconstructor", "energy.pkl"],
            {"analysis_prog": "ctapipe-apply-models", "data_level": 2, "merged": 0},
        ),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) and "type" in v else "",
)  # fmt: skip
def test_one_output_per_input(
    tmp_path: Path, config: dict[str, Any], program: list[str], meta: dict[str, Any]
) -> None:
    inputs = ["/ctao/in/a_run1.h5", "/ctao/in/b_run2.h5"]
    job = render(production(from_dataset(1, config)), "1", inputs, task=2345)
    args = shlex.split(job.arguments)
    assert args[args.index("--") + 1 :] == program
    assert args[args.index("--inputs") + 1 : args.index("--inputs") + 3] == inputs
    assert "--each" in args
    prog = meta.get("analysis_prog") or meta.get("tel_sim_prog")
    base = f"/ctao/MC/test/Prod6Test/Paranal/gamma/{prog}/42/Data/002xxx"
    ext = lfns(job)[0].rsplit("_2345.", 1)[1]
    assert lfns(job) == [f"{base}/a_run1_2345.{ext}", f"{base}/b_run2_2345.{ext}"]
    assert meta.items() <= job.output_metadata.items()
    inherited = {"site": "Paranal", "particle": "gamma", "phiP": 180.0, "thetaP": 20.0}
    assert inherited.items() <= job.output_metadata.items()
    files = {"a_run1.h5": b"a", "b_run2.h5": b"b", "energy.pkl": b"model"}
    outputs = run_job(job, tmp_path, files)
    assert len(set(outputs.values())) == 2  # each output from its own input


@pytest.mark.parametrize(
    ("config", "program", "kind"),
    [
        (
            {"type": "Merging", "version": "v0.19.2", "group_size": 3,
             "output_extension": "merged.DL2.h5", "options": "--no-dl1-images"},
            ["ctapipe-merge", "--output", "@OUT@", "--no-dl1-images", "@INPUTS@"],
            "Data",
        ),
        (
            {"type": "CtapipeTrainEnergy", "version": "v0.19.2", "group_size": 3,
             "options": "-c train_energy.yml"},
            ["ctapipe-train-energy-regressor", "--input", "@INPUTS@", "--output", "@OUT@", "-c",
             "train_energy.yml"],
            "Model",
        ),
        (
            {"type": "CtapipeTrainClassifier", "version": "v0.19.2", "group_size": 3},
            ["ctapipe-train-particle-classifier", "--input", "@INPUTS@", "--output", "@OUT@"],
            "Model",
        ),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) and "type" in v else "",
)  # fmt: skip
def test_one_output_per_task(
    tmp_path: Path, config: dict[str, Any], program: list[str], kind: str
) -> None:
    inputs = ["/ctao/in/a.h5", "/ctao/in/b.h5", "/ctao/in/c.h5"]
    job = render(production(from_dataset(1, config)), "1", inputs, task=17)
    args = shlex.split(job.arguments)
    assert args[args.index("--") + 1 :] == program
    prog = program[0]
    (lfn,) = lfns(job)
    assert lfn.startswith(f"/ctao/MC/test/Prod6Test/Paranal/gamma/{prog}/42/{kind}/000xxx/")
    assert lfn.rsplit("/", 1)[1].startswith("gamma_Paranal_Alpha_000017.")
    assert job.output_metadata["outputType"] == kind
    if config["type"] == "Merging":
        assert job.output_metadata["merged"] == 1
        assert job.output_metadata["data_level"] == 1  # the inputs' level
    outputs = run_job(job, tmp_path, {"a.h5": b"a" * 10, "b.h5": b"b" * 10, "c.h5": b"c"})
    assert len(outputs) == 1


def test_job_options_become_job_attributes() -> None:
    config = {
        "type": "CtapipeProcessing", "version": "v0.19.2", "data_level": 2,
        "output_extension": "DL2.h5", "destination": "CTAO.CSCS.ch, CTAO.PIC.es",
        "cpu_time": 3600, "tag": "production", "nb_processors": 4, "catalogs": "DIRACFileCatalog",
    }  # fmt: skip
    job = render(production(from_dataset(1, config)), "1", ["/ctao/in/a.h5"])
    assert job.sites == ["CTAO.CSCS.ch", "CTAO.PIC.es"]
    assert (job.cpu_time, job.tags, job.number_of_processors) == (3600, ["production"], 4)
    assert job.job_type == "DataReprocessing"
