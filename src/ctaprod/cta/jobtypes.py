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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctaprod.core.errors import InvalidInput
from ctaprod.cta.processing import (
    apply_models,
    ctapipe_process,
    evndisp,
    merge,
    simtel_processing,
    train,
)
from ctaprod.cta.simulation import mc_simulation, simpipe
from ctaprod.cta.steps import Built, StepContext

__all__ = ["COMMON_KEYS", "JOB_TYPES", "JobType", "job_type"]


@dataclass(frozen=True)
class JobType:
    """One YAML ``type``: the keys it takes and how its transformation is built."""

    name: str
    transformation_type: str
    keys: frozenset[str]
    build: Callable[[StepContext], Built] = field(compare=False)
    mandatory: frozenset[str] = frozenset()

    @property
    def needs_input(self) -> bool:
        return self.transformation_type != "MCSimulation"


# --- the registry ----------------------------------------------------------------------------

# Keys every type takes (CTADIRAC's job-level keys); ``catalogs`` is read and ignored:
# ctaprod has one catalog.
COMMON_KEYS = frozenset({"type", "version", "catalogs", "destination", "cpu_time", "tag"})
COMMON_KEYS |= {"nb_processors", "input_sandbox"}
INPUT_KEYS = frozenset({"group_size", "input_limit", "options", "output_extension"})
PROCESSING_KEYS = INPUT_KEYS | {"data_level", "array_layout", "split"}
MC_KEYS = frozenset(
    {
        "site", "particle", "pointing_dir", "zenith_angle", "n_shower", "magic", "sct", "moon",
        "start_run_number", "array_layout", "layout", "only_corsika", "div_ang", "sequential",
        "random_mono_probability", "instrument_random_seeds",
    }
)  # fmt: skip
SIMPIPE_KEYS = frozenset(
    {
        "simpipe_config", "site", "particle", "zenith_angle", "azimuth_angle", "pointing_dir",
        "n_shower", "array_layout", "start_run_number",
    }
)  # fmt: skip
SIMTEL_KEYS = INPUT_KEYS | {
    "sct", "moon", "div_ang", "random_mono_probability", "instrument_random_seeds",
    "systematic_uncertainty_to_test", "array_layout",
}  # fmt: skip
SIMULATION, PROCESSING = COMMON_KEYS | MC_KEYS, COMMON_KEYS | PROCESSING_KEYS
NEEDS_EXTENSION = frozenset({"output_extension"})

_TYPES = [
    JobType("MCSimulation", "MCSimulation", SIMULATION, mc_simulation),
    JobType("SimPipe", "MCSimulation", COMMON_KEYS | SIMPIPE_KEYS, simpipe),
    JobType("SimTelProcessing", "DataReprocessing", COMMON_KEYS | SIMTEL_KEYS, simtel_processing),
    JobType(
        "CtapipeProcessing", "DataReprocessing", PROCESSING, ctapipe_process,
        NEEDS_EXTENSION | {"data_level"},
    ),
    JobType("EvnDispProcessing", "DataReprocessing", PROCESSING, evndisp),
    JobType("Merging", "Merging", PROCESSING, merge, NEEDS_EXTENSION),
    JobType(
        "CtapipeTrainEnergy", "Training", PROCESSING,
        train("ctapipe-train-energy-regressor", "energy.pkl"),
    ),
    JobType(
        "CtapipeTrainClassifier", "Training", PROCESSING,
        train("ctapipe-train-particle-classifier", "classifier.pkl"),
    ),
    JobType("CtapipeApplyModels", "ApplyModel", PROCESSING, apply_models),
]  # fmt: skip
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
