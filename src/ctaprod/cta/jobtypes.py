"""The CTA job types (DESIGN.md §7): each turns one production step into a transformation.

A job type knows the ``job_config`` keys it accepts, the transformation type it becomes and
how to build the transformation definition: the job template (the launcher,
:mod:`ctaprod.cta.run`, running the program's real command line), the output LFN templates
in the CTA layout, the output metadata (directory-level keys of section 7, and per output
what differs, e.g. the NSB of each sim_telarray output), grouping and run numbers.

LFN layout: ``<base_path>/<MCCampaign>/<site>/<particle>/<prog>/<TransformationID>/
<outputType>/<NNNxxx>/<file>``. ``NNNxxx`` is the run number // 1000 for MC steps; steps
with input files have no run numbers of their own, so they use the task ID, which is unique
within the transformation as a run number is. A site or particle the step cannot know (a
dataset the converter could not read, a training on several particles) is written
``unknown`` (site) or ``mixed`` / ``unknown`` (particle) in the path, and not set in the
metadata.

Metadata inheritance follows CTADIRAC: a processing step's outputs carry the array layout,
site, particle, pointing, SCT flag, NSB, divergence and split its input files carry (known
from the parent's outputs, the dataset and the step's own query), the step's own
``array_layout`` and ``data_level`` winning; Merging counts ``merged`` up by one.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ctaprod.core.errors import InvalidInput
from ctaprod.cta.metadata import (
    MC_MOONS,
    MOON_FILE_TAG,
    MOON_NSB,
    POINTING_PHI,
    data_level,
    moon_list,
    number,
    pointing_dir,
)
from ctaprod.cta.settings import CtaSettings

__all__ = ["JOB_TYPES", "Built", "Common", "JobType", "StepContext", "job_type"]

RUN_DIR = "{{run_number // 1000 : 3}}xxx"
TASK_DIR = "{{task_id // 1000 : 3}}xxx"
SITES = ("LaPalma", "Paranal")
PARTICLES = ("gamma", "gamma-diffuse", "electron", "proton", "helium", "muon")
# Inherited by a processing step's outputs from its inputs (CTADIRAC's set_output_metadata
# and its per-file fields).
INHERITED = ("array_layout", "site", "particle", "phiP", "thetaP", "sct", "nsb", "div_ang")
INHERITED_SPLIT = (*INHERITED, "split")


@dataclass(frozen=True)
class Common:
    """The production-wide keys (``Common``)."""

    campaign: str
    configuration_id: int
    base_path: str


@dataclass(frozen=True)
class StepContext:
    """What one step's transformation is built from."""

    step_id: str
    config: Mapping[str, Any]  # job_config, empty values dropped, keys checked
    common: Common
    # Metadata every input file carries (field -> value, or list of the values it may have).
    inherited: Mapping[str, Any]
    settings: CtaSettings
    mc_tasks: int

    def bad(self, key: str, message: str) -> InvalidInput:
        return InvalidInput(
            f"step {self.step_id}: job_config.{key}: {message}", step=self.step_id, key=key
        )

    def where(self, key: str) -> str:
        return f"{self.step_id}:job_config.{key}"

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.config.get(key, default)
        if value is None:
            return None
        if isinstance(value, date):  # YAML reads 2024-02-05 as a date
            return value.isoformat()
        if isinstance(value, bool | list | dict):
            raise self.bad(key, f"{value!r} is not a text")
        return str(value)

    def integer(self, key: str, default: int | None = None, low: int = 0) -> int | None:
        value = self.config.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.bad(key, f"{value!r} is not a whole number")
        try:
            number_ = int(value)
        except ValueError:
            raise self.bad(key, f"{value!r} is not a whole number") from None
        if number_ < low:
            raise self.bad(key, f"{number_} is less than {low}")
        return number_

    def flag(self, key: str) -> bool:
        value = self.config.get(key, False)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        if not isinstance(value, bool):
            raise self.bad(key, f"{value!r} is not True or False")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value is None:
            raise self.bad(key, "missing")
        for name in allowed:
            if value.lower() == name.lower():
                return name
        raise self.bad(key, f"{value!r} is not one of {', '.join(allowed)}")

    def version(self) -> str:
        version = self.text("version")
        if not version:
            raise InvalidInput(
                f"step {self.step_id}: job_config.version: the software version is mandatory",
                step=self.step_id,
                key="version",
            )
        return version

    def single(self, name: str) -> Any:
        """The one value every input file has for ``name``, or None."""
        value = self.inherited.get(name)
        return None if isinstance(value, list) else value


@dataclass(frozen=True)
class Built:
    """A step's transformation definition, and the metadata its data outputs carry (field ->
    value, or list of values when the outputs differ) for its children."""

    transformation: dict[str, Any]
    output: dict[str, Any]


@dataclass(frozen=True)
class JobType:
    """One YAML ``type``: the keys it takes and how its transformation is built."""

    name: str
    transformation_type: str
    program: str
    keys: frozenset[str]
    build: Callable[[StepContext], Built] = field(compare=False)
    mandatory: frozenset[str] = frozenset()

    @property
    def needs_input(self) -> bool:
        return self.transformation_type != "MCSimulation"


# --- job templates ---------------------------------------------------------------------------


def _quoted(parts: list[str]) -> str:
    """A command line for the job wrapper (split with shlex there): placeholders stay bare
    (a list placeholder inside a text renders as several words), the rest is quoted."""
    return " ".join(p if "{{" in p else shlex.quote(p) for p in parts)


def _job(
    ctx: StepContext,
    package: str,
    version: str,
    launcher: list[str],
    program: list[str],
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The job template: the launcher runs ``program`` with the site's software."""
    args = ["-m", "ctaprod.cta.run", "--software", ctx.settings.software]
    args += ["--package", package, "--version", version, *launcher, "--", *program]
    job: dict[str, Any] = {
        "Executable": ctx.settings.python,
        "Arguments": _quoted(args),
        "CPUTime": ctx.integer("cpu_time", ctx.settings.cpu_time, low=1),
    }
    if environment:
        job["Environment"] = dict(environment)
    destination = ctx.config.get("destination")
    if destination:
        job["Site"] = _names(destination)
    if ctx.config.get("tag"):
        job["Tags"] = _names(ctx.config["tag"])
    if ctx.config.get("nb_processors"):
        job["NumberOfProcessors"] = ctx.integer("nb_processors", low=1)
    if ctx.config.get("input_sandbox"):
        job["InputSandbox"] = _names(ctx.config["input_sandbox"])
    return job


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def _options(ctx: StepContext) -> list[str]:
    text = ctx.text("options") or ""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ctx.bad("options", f"cannot be split into arguments ({exc})") from None


# --- metadata and LFNs -----------------------------------------------------------------------


def _path_part(value: Any, several: str) -> str:
    if isinstance(value, list):
        return several
    return "unknown" if value in (None, "") else str(value)


def _lfn(ctx: StepContext, meta: Mapping[str, Any], prog: str, kind: str, run_dir: str) -> str:
    site = _path_part(meta.get("site"), "unknown")
    particle = _path_part(meta.get("particle"), "mixed")
    parts = [ctx.common.base_path.rstrip("/"), ctx.common.campaign, site, particle, prog]
    return "/".join([*parts, "{{transformation_id}}", kind, run_dir]) + "/"


def _number_text(value: float) -> str:
    return f"{value:g}"


def _base_metadata(ctx: StepContext, category: str, prog: str, version: str) -> dict[str, Any]:
    return {
        "MCCampaign": ctx.common.campaign,
        "configuration_id": ctx.common.configuration_id,
        f"{category}_prog": prog,
        f"{category}_prog_version": version,
        "outputType": "Data",
    }


def _known(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``names`` that have one value."""
    return {k: values[k] for k in names if values.get(k) is not None}


# --- MCSimulation ----------------------------------------------------------------------------


def _mc(ctx: StepContext) -> Built:
    version = ctx.version()
    site = ctx.choice("site", SITES)
    particle = ctx.choice("particle", PARTICLES)
    if ctx.config.get("pointing_dir") is None:
        raise ctx.bad("pointing_dir", "missing (North, South, East or West)")
    pointing = pointing_dir(ctx.config["pointing_dir"], ctx.where("pointing_dir"))
    phi = POINTING_PHI[pointing]
    zenith = number(ctx.config.get("zenith_angle", 20), ctx.where("zenith_angle"))
    if not 0 <= zenith < 90:
        raise ctx.bad("zenith_angle", f"{zenith:g} is not a zenith angle in [0, 90)")
    showers = ctx.integer("n_shower", low=1)
    if showers is None:
        raise ctx.bad("n_shower", "missing (showers per run)")
    moons = moon_list(ctx.config.get("moon", "dark"), ctx.where("moon"))
    if moons not in MC_MOONS:
        raise ctx.bad(
            "moon",
            f"{', '.join(moons)}: an MC step simulates 'dark', 'dark, half' or 'dark, half, full'",
        )
    only_corsika = ctx.flag("only_corsika")
    layout = ctx.text("array_layout", "Prod6-Hyperarray") or ""
    sct = ctx.config.get("sct")
    flags: list[str] = []
    software_version = version
    if sct is not None:
        sct = ctx.choice("sct", ("all", "non-alpha"))
        flags.append("--with-all-scts" if sct == "all" else "--with-sct")
        software_version = f"{version}-sc"  # the SCT build of the package
    if moons != ["dark"]:
        flags.append("--with-full-moon" if "full" in moons else "--with-half-moon")
    if ctx.flag("magic"):
        flags.append("--with-magic")
    if ctx.flag("sequential"):
        flags.append("--sequential")
    if only_corsika:
        flags.append("--without-multipipe")
    if ctx.flag("instrument_random_seeds"):
        flags.append("--instrument-random-seeds")
    if ctx.config.get("random_mono_probability") is not None:
        prob = number(ctx.config["random_mono_probability"], ctx.where("random_mono_probability"))
        if not 0 <= prob <= 1:
            raise ctx.bad("random_mono_probability", f"{prob:g} is not in [0, 1]")
        flags += ["--random-mono-probability", _number_text(prob)]
    if ctx.config.get("layout"):
        flags.append("--" + str(ctx.config["layout"]).removeprefix("--"))
    divs = _names(ctx.config["div_ang"]) if ctx.config.get("div_ang") else []
    if divs:
        flags.append("--divergent")
    start = ctx.integer("start_run_number", 0)
    assert start is not None
    category, prog = ("airshower_sim", "corsika") if only_corsika else ("tel_sim", "sim_telarray")
    meta = _base_metadata(ctx, category, prog, version)
    meta |= {
        "array_layout": layout,
        "site": site,
        "particle": particle,
        "phiP": phi,
        "thetaP": zenith,
        "sct": "True" if sct else "False",
        "data_level": -3 if only_corsika else -1,
        "merged": 0,
        "runNumber": "{{run_number}}",
    }
    name = f"run{{{{run_number:6}}}}_{particle}_{_number_text(zenith)}deg_{_number_text(phi)}deg"
    name += f"_{site}_{layout}"
    data_dir, log_dir = (_lfn(ctx, meta, prog, kind, RUN_DIR) for kind in ("Data", "Log"))
    templates: list[str] = []
    per_output: list[dict[str, Any]] = []
    collect: list[str] = []
    if only_corsika:
        templates = [f"{data_dir}{name}.corsika.zst", f"{log_dir}{name}.corsika.log.gz"]
        per_output = [{}, {"outputType": "Log"}]
        collect = ["Data/*.corsika.zst", "Data/*.corsika.log.gz"]
        nsbs = [MOON_NSB[m] for m in moons]
    else:
        nsbs = []
        for div, moon in itertools.product(divs or [""], moons):
            nsb, tag = MOON_NSB[moon], MOON_FILE_TAG[MOON_NSB[moon]]
            div_part = f"_div{div}" if div else ""
            extra: dict[str, Any] = {"nsb": nsb} | ({"div_ang": div} if div else {})
            templates += [
                f"{data_dir}{name}{div_part}_{tag}.simtel.zst",
                f"{log_dir}{name}{div_part}_{tag}.log_hist.tar",
            ]
            per_output += [extra, extra | {"outputType": "Log"}]
            glob = f"Data/*-div{div}*-{tag}" if div else f"Data/*-{tag}"
            collect += [f"{glob}.simtel.zst", f"{glob}.log_hist.tar"]
            nsbs.append(nsb)
    launcher = ["--outputs", "{{output_lfns}}"]
    for pattern in collect:
        launcher += ["--collect", pattern]
    program = ["dirac_prod_run", "--start_run", "0", "--run-number", "{{run_number}}", *flags]
    program += [site, particle, pointing, _number_text(zenith)]
    transformation = {
        "type": "MCSimulation",
        "description": f"{particle} showers at {site}, {pointing}, {zenith:g} deg, "
        f"{', '.join(moons)} (CTADIRAC step {ctx.step_id})",
        "job_template": _job(
            ctx, "corsika_simtelarray", software_version, launcher, program, {"NSHOW": str(showers)}
        ),
        "output_lfn_template": templates,
        "output_file_metadata": per_output,
        "output_metadata": meta,
        "max_tasks": ctx.mc_tasks,
        "run_number_start": start + 1,
    }
    output = {k: v for k, v in meta.items() if k != "runNumber"}
    output["nsb"] = nsbs[0] if len(set(nsbs)) == 1 else sorted(set(nsbs))
    if divs:
        output["div_ang"] = divs[0] if len(divs) == 1 else divs
    return Built(transformation, output)


def _simpipe(ctx: StepContext) -> Built:
    """simtools' production pipeline: the configuration file says what to simulate; the
    step repeats what the metadata needs (site, particle, pointing)."""
    version = ctx.version()
    config = ctx.text("simpipe_config")
    if not config:
        raise ctx.bad("simpipe_config", "missing (the simtools configuration file)")
    site = ctx.choice("site", SITES)
    particle = ctx.choice("particle", PARTICLES)
    zenith = number(ctx.config.get("zenith_angle", 20), ctx.where("zenith_angle"))
    azimuth = number(ctx.config.get("azimuth_angle", 0), ctx.where("azimuth_angle"))
    showers = ctx.integer("n_shower", low=1)
    layout = ctx.text("array_layout", "") or ""
    phi = round((azimuth + 180) % 360, 2)  # simtools' azimuth -> sim_telarray's phiP
    meta = _base_metadata(ctx, "tel_sim", "simpipe", version)
    meta |= {
        "site": site,
        "particle": particle,
        "phiP": phi,
        "thetaP": zenith,
        "sct": "False",
        "data_level": -1,
        "merged": 0,
        "runNumber": "{{run_number}}",
        "nsb": 1,
    }
    if layout:
        meta["array_layout"] = layout
    name = f"run{{{{run_number:6}}}}_{particle}_{_number_text(zenith)}deg_{_number_text(phi)}deg"
    name += f"_{site}"
    data_dir, log_dir = (_lfn(ctx, meta, "simpipe", kind, RUN_DIR) for kind in ("Data", "Log"))
    program = ["simtools-simulate-prod", "--config", config, "--run_number", "{{run_number}}"]
    program += ["--output_path", "simtools-output"]
    if showers is not None:
        program += ["--nshow", str(showers)]
    launcher = ["--outputs", "{{output_lfns}}", "--collect", "simtools-output/*.simtel.zst"]
    launcher += ["--collect", "simtools-output/*.log_hist.tar"]
    start = ctx.integer("start_run_number", 0)
    assert start is not None
    transformation = {
        "type": "MCSimulation",
        "description": f"simtools production {config} (CTADIRAC step {ctx.step_id})",
        "job_template": _job(ctx, "simpipe", version, launcher, program),
        "output_lfn_template": [f"{data_dir}{name}.simtel.zst", f"{log_dir}{name}.log_hist.tar"],
        "output_file_metadata": [{}, {"outputType": "Log"}],
        "output_metadata": meta,
        "max_tasks": ctx.mc_tasks,
        "run_number_start": start + 1,
    }
    return Built(transformation, {k: v for k, v in meta.items() if k != "runNumber"})


# --- steps with input files ------------------------------------------------------------------


def _processing_metadata(
    ctx: StepContext, category: str, prog: str, version: str, level: int, names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(directory-level output metadata, the one value per field of the inputs it keeps)."""
    kept = _known({k: ctx.single(k) for k in names}, names)
    if ctx.config.get("array_layout"):
        kept["array_layout"] = ctx.text("array_layout")
    if ctx.config.get("split"):
        kept["split"] = ctx.text("split")
    meta = _base_metadata(ctx, category, prog, version) | kept
    meta["data_level"] = level
    return meta, kept


def _per_input(
    ctx: StepContext,
    *,
    ttype: str,
    package: str,
    prog: str,
    level: int,
    ext: str,
    program: list[str],
    merged: int | None,
    names: tuple[str, ...] = INHERITED_SPLIT,
    category: str = "analysis",
) -> Built:
    """A step that makes one output per input file (the program runs once per file)."""
    version = ctx.version()
    meta, _ = _processing_metadata(ctx, category, prog, version, level, names)
    if merged is not None:
        meta["merged"] = merged
    template = _lfn(ctx, meta, prog, "Data", TASK_DIR) + "{{input_stem}}_{{task_id}}." + ext
    launcher = ["--inputs", "{{input_lfns}}", "--outputs", "{{output_lfns}}", "--each"]
    transformation = {
        "type": ttype,
        "description": f"{prog} {version} (CTADIRAC step {ctx.step_id})",
        "plugin": "Standard",
        "group_size": ctx.integer("group_size", 1, low=1),
        "job_template": _job(ctx, package, version, launcher, program),
        "output_lfn_template": [template],
        "output_metadata": meta,
    }
    return Built(transformation, dict(meta))


def _per_task(
    ctx: StepContext,
    *,
    ttype: str,
    prog: str,
    level: int | None,
    ext: str,
    program: list[str],
    merged: int | None,
    output_type: str = "Data",
) -> Built:
    """A step that makes one output of all the input files of a task (merge, training)."""
    version = ctx.version()
    meta, kept = _processing_metadata(ctx, "analysis", prog, version, level or 0, INHERITED_SPLIT)
    if level is None:
        meta.pop("data_level")
    if merged is not None:
        meta["merged"] = merged
    meta["outputType"] = output_type
    stem = "_".join(str(kept[k]) for k in ("particle", "site", "array_layout") if k in kept)
    name = f"{stem or prog}_{{{{task_id:6}}}}.{ext}"
    template = _lfn(ctx, meta, prog, output_type, TASK_DIR) + name
    launcher = ["--inputs", "{{input_lfns}}", "--outputs", "{{output_lfns}}"]
    transformation = {
        "type": ttype,
        "description": f"{prog} {version} (CTADIRAC step {ctx.step_id})",
        "plugin": "Standard",
        "group_size": ctx.integer("group_size", 1, low=1),
        "job_template": _job(ctx, "ctapipe", version, launcher, program),
        "output_lfn_template": [template],
        "output_metadata": meta,
    }
    return Built(transformation, dict(meta))


def _extension(ctx: StepContext, default: str) -> str:
    ext = (ctx.text("output_extension") or default).lstrip(".")
    if not ext or "/" in ext or " " in ext:
        raise ctx.bad("output_extension", f"{ext!r} is not a file name ending")
    return ext


def _level(ctx: StepContext, default: int) -> int:
    value = ctx.config.get("data_level")
    return default if value is None else data_level(value, ctx.where("data_level"))


def _simtel_processing(ctx: StepContext) -> Built:
    moons = moon_list(ctx.config.get("moon", "dark"), ctx.where("moon"))
    if len(moons) != 1:
        raise ctx.bad("moon", "sim_telarray on CORSIKA files simulates one moon condition")
    nsb = MOON_NSB[moons[0]]
    flags = ["-C", f"nsb_scaling_factor={nsb}"]
    sct = ctx.config.get("sct")
    if sct is not None:
        sct = ctx.choice("sct", ("all", "non-alpha"))
        flags.append("-DWITH_ALL_SCTS" if sct == "all" else "-DWITH_SCT")
    if ctx.flag("instrument_random_seeds"):
        flags.append("-DINSTRUMENT_RANDOM_SEEDS")
    program = ["sim_telarray", *flags, "-o", "@OUT@", "@IN@"]
    built = _per_input(
        ctx,
        ttype="DataReprocessing",
        package="corsika_simtelarray",
        prog="sim_telarray",
        level=-1,
        ext="simtel.zst",
        program=program,
        merged=0,
        category="tel_sim",
        names=("array_layout", "site", "particle", "phiP", "thetaP"),
    )
    meta = built.transformation["output_metadata"]
    meta |= {"nsb": nsb, "sct": "True" if sct else "False"}
    return Built(built.transformation, dict(meta))


def _ctapipe_process(ctx: StepContext) -> Built:
    ext = _extension(ctx, "DL2.h5")
    level = _level(ctx, 2)
    program = ["ctapipe-process", "--input", "@IN@", "--output", "@OUT@", *_options(ctx)]
    return _per_input(
        ctx,
        ttype="DataReprocessing",
        package="ctapipe",
        prog="ctapipe-process",
        level=level,
        ext=ext,
        program=program,
        merged=0,
    )


def _evndisp(ctx: StepContext) -> Built:
    ext = _extension(ctx, "DL1.root")
    level = _level(ctx, 1)
    program = ["evndisp", "-sourcefile", "@IN@", "-outputfile", "@OUT@", *_options(ctx)]
    return _per_input(
        ctx,
        ttype="DataReprocessing",
        package="evndisp",
        prog="evndisp",
        level=level,
        ext=ext,
        program=program,
        merged=0,
    )


def _merge(ctx: StepContext) -> Built:
    ext = _extension(ctx, "merged.DL2.h5")
    before = ctx.single("merged")
    merged = (int(before) if isinstance(before, int | float) else 0) + 1
    level = _level(ctx, int(ctx.single("data_level") or 2))
    program = ["ctapipe-merge", "--output", "@OUT@", *_options(ctx), "@INPUTS@"]
    return _per_task(
        ctx,
        ttype="Merging",
        prog="ctapipe-merge",
        level=level,
        ext=ext,
        program=program,
        merged=merged,
    )


def _train(tool: str, default_ext: str) -> Callable[[StepContext], Built]:
    def build(ctx: StepContext) -> Built:
        ext = _extension(ctx, default_ext)
        program = [tool, "--input", "@INPUTS@", "--output", "@OUT@", *_options(ctx)]
        return _per_task(
            ctx,
            ttype="Training",
            prog=tool,
            level=None,
            ext=ext,
            program=program,
            merged=None,
            output_type="Model",
        )

    return build


def _apply_models(ctx: StepContext) -> Built:
    ext = _extension(ctx, "DL2.h5")
    level = _level(ctx, 2)
    program = ["ctapipe-apply-models", "--input", "@IN@", "--output", "@OUT@", *_options(ctx)]
    before = ctx.single("merged")
    return _per_input(
        ctx,
        ttype="ApplyModel",
        package="ctapipe",
        prog="ctapipe-apply-models",
        level=level,
        ext=ext,
        program=program,
        merged=int(before) if isinstance(before, int) else None,
    )


# --- the registry ----------------------------------------------------------------------------

# Keys every type takes (CTADIRAC's job-level keys); ``catalogs`` is read and ignored:
# ctaprod has one catalog.
COMMON_KEYS = frozenset({"type", "version", "catalogs", "destination", "cpu_time", "tag"})
COMMON_KEYS |= {"nb_processors", "input_sandbox"}
INPUT_KEYS = frozenset({"group_size", "input_limit", "options", "output_extension"})
PROCESSING_KEYS = INPUT_KEYS | {"data_level", "array_layout", "split"}
MC_KEYS = frozenset(
    {
        "site",
        "particle",
        "pointing_dir",
        "zenith_angle",
        "n_shower",
        "magic",
        "sct",
        "moon",
        "start_run_number",
        "array_layout",
        "layout",
        "only_corsika",
        "div_ang",
        "sequential",
        "random_mono_probability",
        "instrument_random_seeds",
    }
)
SIMPIPE_KEYS = frozenset(
    {
        "simpipe_config",
        "site",
        "particle",
        "zenith_angle",
        "azimuth_angle",
        "n_shower",
        "array_layout",
        "start_run_number",
    }
)
SIMTEL_KEYS = INPUT_KEYS | {
    "sct",
    "moon",
    "div_ang",
    "random_mono_probability",
    "instrument_random_seeds",
    "systematic_uncertainty_to_test",
    "array_layout",
}

_TYPES = [
    JobType("MCSimulation", "MCSimulation", "sim_telarray", COMMON_KEYS | MC_KEYS, _mc),
    JobType("SimPipe", "MCSimulation", "simpipe", COMMON_KEYS | SIMPIPE_KEYS, _simpipe),
    JobType(
        "SimTelProcessing",
        "DataReprocessing",
        "sim_telarray",
        COMMON_KEYS | SIMTEL_KEYS,
        _simtel_processing,
    ),
    JobType(
        "CtapipeProcessing",
        "DataReprocessing",
        "ctapipe-process",
        COMMON_KEYS | PROCESSING_KEYS,
        _ctapipe_process,
        frozenset({"data_level", "output_extension"}),
    ),
    JobType(
        "EvnDispProcessing",
        "DataReprocessing",
        "evndisp",
        COMMON_KEYS | PROCESSING_KEYS,
        _evndisp,
    ),
    JobType(
        "Merging",
        "Merging",
        "ctapipe-merge",
        COMMON_KEYS | PROCESSING_KEYS,
        _merge,
        frozenset({"output_extension"}),
    ),
    JobType(
        "CtapipeTrainEnergy",
        "Training",
        "ctapipe-train-energy-regressor",
        COMMON_KEYS | PROCESSING_KEYS,
        _train("ctapipe-train-energy-regressor", "energy.pkl"),
    ),
    JobType(
        "CtapipeTrainClassifier",
        "Training",
        "ctapipe-train-particle-classifier",
        COMMON_KEYS | PROCESSING_KEYS,
        _train("ctapipe-train-particle-classifier", "classifier.pkl"),
    ),
    JobType(
        "CtapipeApplyModels",
        "ApplyModel",
        "ctapipe-apply-models",
        COMMON_KEYS | PROCESSING_KEYS,
        _apply_models,
    ),
]
JOB_TYPES: dict[str, JobType] = {t.name.lower(): t for t in _TYPES}


def job_type(name: Any, step_id: str) -> JobType:
    """The job type a step's ``type`` names (any letter case), or ``InvalidInput`` listing
    the known ones."""
    found = JOB_TYPES.get(str(name).strip().lower()) if name is not None else None
    if found is None:
        known = ", ".join(t.name for t in _TYPES)
        what = "no job type" if name is None else f"unknown job type {name!r}"
        raise InvalidInput(
            f"step {step_id}: job_config.type: {what} (known: {known})", step=step_id, key="type"
        )
    return found
