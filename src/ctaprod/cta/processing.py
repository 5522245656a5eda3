"""The job types that read input files: one output per input file (sim_telarray on CORSIKA
files, ctapipe-process, evndisp, ctapipe-apply-models; the launcher runs the program once per
file) or one output per task (ctapipe-merge, the two trainings)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ctaprod.cta.metadata import MOON_NSB, OBSERVATION_FIELDS, data_level, moon_list
from ctaprod.cta.steps import (
    INHERITED_SPLIT,
    TASK_DIR,
    Built,
    StepContext,
    base_metadata,
    job_template,
    lfn_dir,
    program_options,
)

__all__ = [
    "apply_models", "ctapipe_process", "evndisp", "merge", "simtel_processing", "train",
]  # fmt: skip


def _known(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``names`` that have one value."""
    return {k: values[k] for k in names if values.get(k) is not None}


def _built(ctx: StepContext, transformation: dict[str, Any], merge: bool = False) -> Built:
    """The step built. Observation data: each output inherits the night, telescope and
    observation of its input (a merge: those its inputs share), a merge never mixes nights
    (ByMetadata on ``night``), and the children know the night(s) the step reads."""
    output = dict(transformation["output_metadata"])
    if not ctx.common.observation:
        return Built(transformation, output)
    transformation["inherit_metadata"] = list(OBSERVATION_FIELDS)
    if merge:
        transformation["plugin"] = "ByMetadata"
        transformation["group_by"] = ["night"]
    if ctx.inherited.get("night") is not None:
        output["night"] = ctx.inherited["night"]
    return Built(transformation, output)


def _processing_metadata(
    ctx: StepContext, category: str, prog: str, version: str, level: int, names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(directory-level output metadata, the one value per field of the inputs it keeps)."""
    kept = _known({k: ctx.single(k) for k in names}, names)
    if ctx.config.get("array_layout"):
        kept["array_layout"] = ctx.text("array_layout")
    if ctx.config.get("split"):
        kept["split"] = ctx.text("split")
    meta = base_metadata(ctx, category, prog, version) | kept
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
    template = lfn_dir(ctx, meta, prog, "Data", TASK_DIR) + "{{input_stem}}_{{task_id}}." + ext
    launcher = ["--inputs", "{{input_lfns}}", "--outputs", "{{output_lfns}}", "--each"]
    transformation = {
        "type": ttype,
        "description": f"{prog} {version} (CTADIRAC step {ctx.step_id})",
        "plugin": "Standard",
        "group_size": ctx.integer("group_size", 1, low=1),
        "job_template": job_template(ctx, package, version, launcher, program),
        "output_lfn_template": [template],
        "output_metadata": meta,
    }
    return _built(ctx, transformation)


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
    template = lfn_dir(ctx, meta, prog, output_type, TASK_DIR) + name
    launcher = ["--inputs", "{{input_lfns}}", "--outputs", "{{output_lfns}}"]
    transformation = {
        "type": ttype,
        "description": f"{prog} {version} (CTADIRAC step {ctx.step_id})",
        "plugin": "Standard",
        "group_size": ctx.integer("group_size", 1, low=1),
        "job_template": job_template(ctx, "ctapipe", version, launcher, program),
        "output_lfn_template": [template],
        "output_metadata": meta,
    }
    return _built(ctx, transformation, merge=ttype == "Merging")


def _extension(ctx: StepContext, default: str) -> str:
    ext = (ctx.text("output_extension") or default).lstrip(".")
    if not ext or "/" in ext or " " in ext:
        raise ctx.bad("output_extension", f"{ext!r} is not a file name ending")
    return ext


def _level(ctx: StepContext, default: int) -> int:
    value = ctx.config.get("data_level")
    return default if value is None else data_level(value, ctx.where("data_level"))


def simtel_processing(ctx: StepContext) -> Built:
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


def ctapipe_process(ctx: StepContext) -> Built:
    ext = _extension(ctx, "DL2.h5")
    level = _level(ctx, 2)
    program = ["ctapipe-process", "--input", "@IN@", "--output", "@OUT@", *program_options(ctx)]
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


def evndisp(ctx: StepContext) -> Built:
    ext = _extension(ctx, "DL1.root")
    level = _level(ctx, 1)
    program = ["evndisp", "-sourcefile", "@IN@", "-outputfile", "@OUT@", *program_options(ctx)]
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


def merge(ctx: StepContext) -> Built:
    ext = _extension(ctx, "merged.DL2.h5")
    before = ctx.single("merged")
    merged = (int(before) if isinstance(before, int | float) else 0) + 1
    level = _level(ctx, int(ctx.single("data_level") or 2))
    program = ["ctapipe-merge", "--output", "@OUT@", *program_options(ctx), "@INPUTS@"]
    return _per_task(
        ctx,
        ttype="Merging",
        prog="ctapipe-merge",
        level=level,
        ext=ext,
        program=program,
        merged=merged,
    )


def train(tool: str, default_ext: str) -> Callable[[StepContext], Built]:
    def build(ctx: StepContext) -> Built:
        ext = _extension(ctx, default_ext)
        program = [tool, "--input", "@INPUTS@", "--output", "@OUT@", *program_options(ctx)]
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


def apply_models(ctx: StepContext) -> Built:
    ext = _extension(ctx, "DL2.h5")
    level = _level(ctx, 2)
    program = [
        "ctapipe-apply-models",
        "--input",
        "@IN@",
        "--output",
        "@OUT@",
        *program_options(ctx),
    ]
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
