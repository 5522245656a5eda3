"""What every CTA job type builds a transformation from: the step's context (its checked
``job_config``, the production's ``Common``, the metadata its inputs carry), and the pieces
every type uses: the job template calling the launcher, the LFN directories of the CTA layout
and the metadata every output carries. See :mod:`ctaprod.cta.jobtypes`."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from ctaprod.core.errors import InvalidInput
from ctaprod.cta.settings import CtaSettings

__all__ = [
    "INHERITED", "INHERITED_SPLIT", "PARTICLES", "RUN_DIR", "SITES", "TASK_DIR", "Built",
    "Common", "StepContext", "base_metadata", "job_template", "lfn_dir", "names_of",
    "number_text", "program_options",
]  # fmt: skip

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
    """The production-wide keys (``Common``). No campaign: observation data."""

    campaign: str | None
    configuration_id: int
    base_path: str

    @property
    def observation(self) -> bool:
        """Whether the production processes observation data (it has no MC campaign)."""
        return self.campaign is None


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


# --- job templates ---------------------------------------------------------------------------


def _quoted(parts: list[str]) -> str:
    """A command line for the job wrapper (split with shlex there): placeholders stay bare
    (a list placeholder inside a text renders as several words), the rest is quoted."""
    return " ".join(p if "{{" in p else shlex.quote(p) for p in parts)


def job_template(
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
        job["Site"] = names_of(destination)
    if ctx.config.get("tag"):
        job["Tags"] = names_of(ctx.config["tag"])
    if ctx.config.get("nb_processors"):
        job["NumberOfProcessors"] = ctx.integer("nb_processors", low=1)
    if ctx.config.get("input_sandbox"):
        job["InputSandbox"] = names_of(ctx.config["input_sandbox"])
    return job


def names_of(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def program_options(ctx: StepContext) -> list[str]:
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


def lfn_dir(ctx: StepContext, meta: Mapping[str, Any], prog: str, kind: str, run_dir: str) -> str:
    """MC: ``<base>/<campaign>/<site>/<particle>/<prog>/<trans>/<kind>/<run_dir>/``;
    observation data: ``<base>/<site>/<night>/<prog>/<trans>/<kind>/<run_dir>/`` (the night
    the step's query selects; ``mixed`` when it takes several)."""
    site = _path_part(meta.get("site"), "unknown")
    base = ctx.common.base_path.rstrip("/")
    if ctx.common.campaign is None:
        parts = [base, site, _path_part(ctx.inherited.get("night"), "mixed"), prog]
    else:
        particle = _path_part(meta.get("particle"), "mixed")
        parts = [base, ctx.common.campaign, site, particle, prog]
    return "/".join([*parts, "{{transformation_id}}", kind, run_dir]) + "/"


def number_text(value: float) -> str:
    return f"{value:g}"


def base_metadata(ctx: StepContext, category: str, prog: str, version: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"MCCampaign": ctx.common.campaign} if ctx.common.campaign else {}
    return meta | {
        "configuration_id": ctx.common.configuration_id,
        f"{category}_prog": prog,
        f"{category}_prog_version": version,
        "outputType": "Data",
    }
