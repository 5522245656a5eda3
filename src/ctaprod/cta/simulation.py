"""The simulation job types: CORSIKA piped into sim_telarray (``MCSimulation``, CTADIRAC's
``dirac_prod_run``) and simtools' production pipeline (``SimPipe``). They read no input:
each task is one run, its number the transformation's run number."""

from __future__ import annotations

import itertools
from typing import Any

from ctaprod.cta.metadata import (
    MC_MOONS,
    MOON_FILE_TAG,
    MOON_NSB,
    POINTING_PHI,
    moon_list,
    number,
    pointing_dir,
)
from ctaprod.cta.steps import (
    PARTICLES,
    RUN_DIR,
    SITES,
    Built,
    StepContext,
    base_metadata,
    job_template,
    lfn_dir,
    names_of,
    number_text,
)

__all__ = ["mc_simulation", "simpipe"]


def mc_simulation(ctx: StepContext) -> Built:
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
        flags += ["--random-mono-probability", number_text(prob)]
    if ctx.config.get("layout"):
        flags.append("--" + str(ctx.config["layout"]).removeprefix("--"))
    divs = names_of(ctx.config["div_ang"]) if ctx.config.get("div_ang") else []
    if divs:
        flags.append("--divergent")
    start = ctx.integer("start_run_number", 0)
    assert start is not None
    category, prog = ("airshower_sim", "corsika") if only_corsika else ("tel_sim", "sim_telarray")
    meta = base_metadata(ctx, category, prog, version)
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
    name = f"run{{{{run_number:6}}}}_{particle}_{number_text(zenith)}deg_{number_text(phi)}deg"
    name += f"_{site}_{layout}"
    data_dir, log_dir = (lfn_dir(ctx, meta, prog, kind, RUN_DIR) for kind in ("Data", "Log"))
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
    program += [site, particle, pointing, number_text(zenith)]
    transformation = {
        "type": "MCSimulation",
        "description": f"{particle} showers at {site}, {pointing}, {zenith:g} deg, "
        f"{', '.join(moons)} (CTADIRAC step {ctx.step_id})",
        "job_template": job_template(
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


def simpipe(ctx: StepContext) -> Built:
    """simtools' production pipeline: the configuration file says what to simulate; the
    step repeats what the metadata needs (site, particle, pointing)."""
    version = ctx.version()
    config = ctx.text("simpipe_config")
    if not config:
        raise ctx.bad("simpipe_config", "missing (the simtools configuration file)")
    site = ctx.choice("site", SITES)
    particle = ctx.choice("particle", PARTICLES)
    zenith = number(ctx.config.get("zenith_angle", 20), ctx.where("zenith_angle"))
    showers = ctx.integer("n_shower", low=1)
    layout = ctx.text("array_layout", "") or ""
    if ctx.config.get("pointing_dir") is not None:  # as MCSimulation steps write it
        if ctx.config.get("azimuth_angle") is not None:
            raise ctx.bad("pointing_dir", "give pointing_dir or azimuth_angle, not both")
        phi = POINTING_PHI[pointing_dir(ctx.config["pointing_dir"], ctx.where("pointing_dir"))]
    else:
        azimuth = number(ctx.config.get("azimuth_angle", 0), ctx.where("azimuth_angle"))
        phi = round((azimuth + 180) % 360, 2)  # simtools' azimuth -> sim_telarray's phiP
    meta = base_metadata(ctx, "tel_sim", "simpipe", version)
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
    name = f"run{{{{run_number:6}}}}_{particle}_{number_text(zenith)}deg_{number_text(phi)}deg"
    name += f"_{site}"
    data_dir, log_dir = (lfn_dir(ctx, meta, "simpipe", kind, RUN_DIR) for kind in ("Data", "Log"))
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
        "job_template": job_template(ctx, "simpipe", version, launcher, program),
        "output_lfn_template": [f"{data_dir}{name}.simtel.zst", f"{log_dir}{name}.log_hist.tar"],
        "output_file_metadata": [{}, {"outputType": "Log"}],
        "output_metadata": meta,
        "max_tasks": ctx.mc_tasks,
        "run_number_start": start + 1,
    }
    return Built(transformation, {k: v for k, v in meta.items() if k != "runNumber"})
