"""CTADIRAC production files (``ProdSteps`` + ``Common``) as generic production definitions.

:func:`convert` reads the file as CTADIRAC's production system does and returns the
definition of :mod:`ctaprod.core.productions` (name, description, base_path, steps with id,
name, parents, dataset, input_query, input_limit and transformation), or raises one
``InvalidInput`` whose message starts with the step (``step 2: job_config.grup_size: unknown
key (did you mean 'group_size'?)``) and whose detail has ``step`` and ``key``.

Rules, as CTADIRAC applies them:

- ``Common``: ``MCCampaign`` and ``configuration_id`` are mandatory; ``base_path`` is where
  the outputs go (default ``/ctao/MC``); job-level keys there (``version``, ``catalogs``...)
  are defaults for every step.
- Observation data (ctaprod's addition: CTADIRAC only knows simulations): a file without
  ``MCCampaign`` whose every root step selects its input by ``night`` processes observation
  data (``base_path`` default ``/ctao/data``; no MC step). Its outputs inherit ``night``,
  ``tel_id`` and ``obs_id`` from their inputs and a Merging step groups by night
  (:mod:`ctaprod.cta.processing`); LFNs are ``<base_path>/<site>/<night>/<prog>/...``.
- ``input_meta_query``: ``parentID`` (empty: none) links to a step of the file, ``dataset``
  (empty: none) names a catalog dataset, every other key is a metadata constraint, the
  shorthands rewritten (``pointing_dir`` -> ``phiP``, ``zenith_angle`` -> ``thetaP``, ``moon``
  -> ``nsb``, level names -> ``data_level``). A step with a parent also asks for the
  ``outputType`` of the parent's main outputs (``Data``; ``Model`` after a training): a
  parent's log files carry its step too (CTADIRAC's parent query holds the parent's whole
  output metadata, ``outputType`` included).
- ``job_config``: ``type`` names a job type (:mod:`ctaprod.cta.jobtypes`, any letter case),
  the keys each type accepts are CTADIRAC's; ``input_limit`` becomes the step's test-mode
  limit.

What a step's outputs carry is computed from its parent's outputs, its dataset and its own
query, as CTADIRAC does; ``datasets`` (name -> query mapping), when the caller can read them,
gives a dataset's metadata (without it, a dataset-rooted step only knows its own query).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from ctaprod.core.errors import InvalidInput
from ctaprod.core.metaquery import Op, parse, to_text
from ctaprod.cta.jobtypes import COMMON_KEYS, job_type
from ctaprod.cta.metadata import MOON_NSB, POINTING_PHI, data_level, moon_list, number
from ctaprod.cta.metadata import pointing_dir as pointing_name
from ctaprod.cta.settings import CtaSettings
from ctaprod.cta.steps import Common, StepContext

__all__ = ["DEFAULT_BASE_PATH", "DEFAULT_DATA_PATH", "DEFAULT_MC_TASKS", "convert", "detect"]

DEFAULT_MC_TASKS = 10
DEFAULT_BASE_PATH = "/ctao/MC"
DEFAULT_DATA_PATH = "/ctao/data"
STEP_KEYS = ("ID", "name", "input_meta_query", "job_config")
COMMON_FIELDS = ("MCCampaign", "configuration_id", "base_path")
LINK_KEYS = ("parentID", "dataset")
DatasetLookup = Callable[[str], Mapping[str, Any] | None]


def detect(raw: object) -> bool:
    """Whether ``raw`` is a CTADIRAC production file (it has ``ProdSteps``)."""
    return isinstance(raw, Mapping) and "ProdSteps" in raw


def _unknown(step: str, where: str, key: str, known: list[str]) -> InvalidInput:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(known))})"
    prefix = f"step {step}: " if step else ""
    return InvalidInput(f"{prefix}{where}{key}: unknown key{hint}", step=step, key=key)


def _common(raw: Mapping[str, Any]) -> tuple[Common, dict[str, Any]]:
    common = raw.get("Common")
    if common is None:
        common = {}
    if not isinstance(common, Mapping):
        raise InvalidInput("Common: a mapping of keys to values", key="Common")
    known = [*COMMON_FIELDS, *sorted(COMMON_KEYS - {"type"})]
    for key in common:
        if key not in known:
            raise _unknown("", "Common.", str(key), known)
    if common.get("configuration_id") in (None, ""):
        raise InvalidInput("Common.configuration_id: mandatory", key="configuration_id")
    # No campaign: observation data, if every root step selects by night (checked per step).
    campaign = None if common.get("MCCampaign") in (None, "") else str(common["MCCampaign"])
    config_id = common["configuration_id"]
    if isinstance(config_id, bool) or not str(config_id).strip().isdigit():
        raise InvalidInput(
            f"Common.configuration_id: {config_id!r} is not a whole number", key="configuration_id"
        )
    base = common.get("base_path") or (DEFAULT_BASE_PATH if campaign else DEFAULT_DATA_PATH)
    if not isinstance(base, str) or not base.startswith("/"):
        raise InvalidInput(f"Common.base_path: {base!r} is not an absolute path", key="base_path")
    defaults = {k: v for k, v in common.items() if k not in COMMON_FIELDS and v is not None}
    return Common(campaign, int(config_id), base.rstrip("/") or "/"), defaults


def _query_constraints(step: str, query: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata constraints of an ``input_meta_query``, shorthands rewritten."""
    out: dict[str, Any] = {}
    for key, value in query.items():
        key = str(key)
        if key in LINK_KEYS or value is None or value == "":
            continue
        where = f"{step}:input_meta_query.{key}"
        if key == "pointing_dir":
            out["phiP"] = POINTING_PHI[pointing_name(value, where)]
        elif key == "zenith_angle":
            out["thetaP"] = number(value, where)
        elif key == "moon":
            nsbs = [MOON_NSB[m] for m in moon_list(value, where)]
            out["nsb"] = nsbs[0] if len(nsbs) == 1 else nsbs
        elif key == "data_level" and not isinstance(value, Mapping | list):
            out["data_level"] = data_level(value, where)
        elif key in ("sct", "div_ang") and not isinstance(value, Mapping | list):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def _equalities(query: Mapping[str, Any]) -> dict[str, Any]:
    """Field -> its one value (``=``) or its list of values (``in``), from a query mapping."""
    out: dict[str, Any] = {}
    try:
        conditions = parse(dict(query)).conditions
    except InvalidInput:
        return out
    for cond in conditions:
        if cond.op is Op.EQ:
            out[cond.field] = cond.value
        elif cond.op is Op.IN and isinstance(cond.value, tuple):
            out[cond.field] = list(cond.value) if len(cond.value) > 1 else cond.value[0]
    return out


def _query_text(step: str, constraints: Mapping[str, Any]) -> str | None:
    if not constraints:
        return None
    try:
        return to_text(parse(dict(constraints)))
    except InvalidInput as exc:
        raise InvalidInput(
            f"step {step}: input_meta_query: {exc.message}", step=step, key="input_meta_query"
        ) from None


class _Converter:
    def __init__(
        self,
        raw: Mapping[str, Any],
        mc_tasks: int,
        datasets: DatasetLookup | None,
        settings: CtaSettings,
    ) -> None:
        self.common, self.defaults = _common(raw)
        self.mc_tasks = mc_tasks
        self.datasets = datasets
        self.settings = settings
        self.steps: dict[str, Mapping[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.done: dict[str, dict[str, Any]] = {}
        steps = raw["ProdSteps"]
        if not isinstance(steps, list) or not steps:
            raise InvalidInput("ProdSteps: a list of one or more steps", key="ProdSteps")
        for index, step in enumerate(steps, 1):
            if not isinstance(step, Mapping):
                raise InvalidInput(f"ProdSteps[{index}]: a step is a mapping", key="ProdSteps")
            if step.get("ID") in (None, ""):
                raise InvalidInput(f"ProdSteps[{index}]: the step has no ID", key="ID")
            sid = str(step["ID"])
            if sid in self.steps:
                raise InvalidInput(f"step {sid}: ID given twice", step=sid, key="ID")
            for key in step:
                if key not in STEP_KEYS:
                    raise _unknown(sid, "", str(key), list(STEP_KEYS))
            self.steps[sid] = step

    def convert(self) -> list[dict[str, Any]]:
        for sid in self.steps:
            self.step(sid, ())
        return [self.done[sid] for sid in self.steps]

    def parent_of(self, sid: str) -> str | None:
        query = self.steps[sid].get("input_meta_query") or {}
        if not isinstance(query, Mapping):
            raise InvalidInput(
                f"step {sid}: input_meta_query: a mapping of keys to values",
                step=sid,
                key="input_meta_query",
            )
        parent = query.get("parentID")
        if parent in (None, ""):
            return None
        parent = str(parent)
        if parent not in self.steps:
            raise InvalidInput(
                f"step {sid}: input_meta_query.parentID: no step {parent} in the file",
                step=sid,
                key="parentID",
            )
        return parent

    def step(self, sid: str, visiting: tuple[str, ...]) -> dict[str, Any]:
        if sid in self.done:
            return self.outputs[sid]
        if sid in visiting:
            cycle = " -> ".join([*visiting[visiting.index(sid) :], sid])
            raise InvalidInput(f"step {sid}: parentID makes a cycle ({cycle})", step=sid)
        raw = self.steps[sid]
        parent = self.parent_of(sid)
        inherited = dict(self.step(parent, (*visiting, sid))) if parent else {}
        query = dict(raw.get("input_meta_query") or {})
        dataset = query.get("dataset") or None
        if dataset is not None and not isinstance(dataset, str):
            raise InvalidInput(
                f"step {sid}: input_meta_query.dataset: a dataset name", step=sid, key="dataset"
            )
        if dataset and self.datasets is not None:
            inherited |= _equalities(self.datasets(dataset) or {})
        constraints = _query_constraints(sid, query)
        config = self.job_config(sid, raw)
        jtype = job_type(config.get("type"), sid)
        for key in config:
            if key not in jtype.keys:
                raise _unknown(sid, "job_config.", key, sorted(jtype.keys))
        for key in jtype.mandatory:
            if config.get(key) in (None, ""):
                raise InvalidInput(
                    f"step {sid}: job_config.{key}: mandatory for {jtype.name}", step=sid, key=key
                )
        if jtype.needs_input:
            if not parent and not dataset and not constraints:
                raise InvalidInput(
                    f"step {sid}: input_meta_query: a {jtype.name} step needs input: a "
                    "parentID, a dataset or metadata constraints",
                    step=sid,
                    key="input_meta_query",
                )
            if parent and "outputType" not in constraints:
                constraints["outputType"] = inherited.get("outputType", "Data")
        elif parent or dataset or constraints:
            raise InvalidInput(
                f"step {sid}: input_meta_query: a {jtype.name} step makes its data, it "
                "takes no input",
                step=sid,
                key="input_meta_query",
            )
        inherited |= _equalities(constraints)
        if self.common.observation and not parent:
            self.check_observation(sid, jtype.needs_input, inherited, constraints)
        ctx = StepContext(
            step_id=sid,
            config=config,
            common=self.common,
            inherited=inherited,
            settings=self.settings,
            mc_tasks=self.mc_tasks,
        )
        built = jtype.build(ctx)
        limit = ctx.integer("input_limit", low=1)
        self.outputs[sid] = built.output
        self.done[sid] = {
            "id": sid,
            "name": str(raw.get("name") or ""),
            "parents": [parent] if parent else [],
            "dataset": dataset,
            "input_query": _query_text(sid, constraints),
            "input_limit": limit,
            "transformation": built.transformation,
        }
        return built.output

    def check_observation(
        self, sid: str, needs_input: bool, inherited: Mapping[str, Any], own: Mapping[str, Any]
    ) -> None:
        """Without ``MCCampaign``, a root step must read observation data: it selects by
        ``night`` (its query, or its dataset's). Otherwise the campaign was forgotten."""
        if needs_input and ("night" in own or "night" in inherited):
            return
        raise InvalidInput(
            "Common.MCCampaign: mandatory (a production of observation data has none, and "
            f"selects its input by night: step {sid} does not)",
            key="MCCampaign",
        )

    def job_config(self, sid: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        config = raw.get("job_config")
        if not isinstance(config, Mapping):
            raise InvalidInput(
                f"step {sid}: job_config: a mapping with at least 'type'",
                step=sid,
                key="job_config",
            )
        merged = dict(self.defaults)
        merged |= {str(k): v for k, v in config.items() if v is not None and v != ""}
        return merged


def convert(
    raw: Mapping[str, Any], options: object = None, *, settings: CtaSettings | None = None
) -> dict[str, Any]:
    """The production definition of a CTADIRAC file (see the module docstring).

    ``options``: part B's ``ConvertOptions`` or any object with ``name`` (the production's
    name: CTADIRAC files have none), ``mc_tasks`` (tasks per MC step, default 10) and
    optionally ``datasets`` (a function: dataset name -> its query mapping, or None).
    ``settings``: the extension's settings (default: read from the environment now).
    """
    if not detect(raw):
        raise InvalidInput("not a CTADIRAC production file: no ProdSteps", key="ProdSteps")
    for key in raw:
        if key not in ("ProdSteps", "Common"):
            raise _unknown("", "", str(key), ["ProdSteps", "Common"])
    name = getattr(options, "name", None)
    if not name:
        raise InvalidInput(
            "name: a CTADIRAC production file has no name: give the production one",
            key="name",
        )
    mc_tasks = getattr(options, "mc_tasks", None) or DEFAULT_MC_TASKS
    converter = _Converter(
        raw, int(mc_tasks), getattr(options, "datasets", None), settings or CtaSettings()
    )
    steps = converter.convert()
    common = converter.common
    what = f"campaign {common.campaign}" if common.campaign else "observation data"
    return {
        "name": name,
        "description": f"CTADIRAC production, {what}, configuration {common.configuration_id}",
        "base_path": common.base_path,
        "steps": steps,
    }
