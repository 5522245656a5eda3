"""The generic production definition: a DAG of steps, each one transformation.

A production is written in one of the registered input formats (:data:`FORMATS`: the generic
format is built in, an extension adds its own, e.g. CTADIRAC's ``ProdSteps``);
:func:`to_definition` detects the format of a raw mapping, converts it and checks the result
(:class:`ProductionDefinition`: step ids unique, parents known, no cycle). Errors are one
``InvalidInput`` whose message starts with ``step <id>:`` and whose detail has ``step`` and
``key`` where they apply.

Each step becomes one transformation named ``<production>.<step id>[.<step name>]``
(:func:`step_definition`): its input query is ``prod_step_id in (<parents' transformation
ids>)`` AND its dataset's query AND its own query; its outputs carry ``prod_step_id = <its own
transformation id>``, which is how children find them. Transformation ids are known only once
created, so steps are created in :func:`topological_order`. :func:`check_compatibility` tells
whether a child can ever see a parent's outputs: every key of the child's own and dataset
query that the parent's output metadata sets must accept the parent's value.

Pure: no I/O. The caller resolves datasets and the catalog's declared fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ctaprod.core.errors import InvalidInput
from ctaprod.core.metaquery import (
    Condition,
    MetaQuery,
    MetaSchema,
    Op,
    coerce,
    matches,
    parse,
    to_text,
)
from ctaprod.core.transformations import ALIASES, check_transformation_name

__all__ = [
    "FORMATS",
    "STEP_FIELD",
    "ConvertOptions",
    "FormatRegistry",
    "ProductionDefinition",
    "ProductionFormat",
    "Step",
    "check_compatibility",
    "output_metadata_of",
    "step_definition",
    "step_trans_name",
    "to_definition",
    "topological_order",
]

# The metadata field linking a step's outputs to its children (its transformation's id).
STEP_FIELD = "prod_step_id"
MAX_STEPS = 100
STEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}")
STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}")
# Set by the production for each step: a step's transformation may not carry them.
_MADE_BY_PRODUCTION = ("name", "input_query")


def _squash(key: str) -> str:
    return re.sub(r"[_\-\s]", "", key).lower()


def _spellings(canonical: str) -> set[str]:
    return {_squash(canonical), *(_squash(a) for a in ALIASES.get(canonical, ()))}


class Step(BaseModel):
    """One step: a transformation whose input is its parents' outputs (and/or a dataset, a
    query)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique in the production")
    name: str = Field("", description="Appended to the transformation's name")
    parents: list[str] = Field(default_factory=list, description="Ids of the parent steps")
    dataset: str | None = Field(None, description="A catalog dataset whose query is the input")
    input_query: str | None = Field(None, description="Extra input constraints (query text)")
    input_limit: int | None = Field(None, ge=1, description="Test mode: at most N input files")
    transformation: dict[str, Any] = Field(
        description="A transformation definition without name and input_query"
    )

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(value, str) or not STEP_ID.fullmatch(value):
            raise ValueError("a step id is letters, digits and _+- (at most 64)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not STEP_NAME.fullmatch(value):
            raise ValueError("a step name is letters, digits and _+- (at most 64)")
        return value

    @field_validator("parents", mode="before")
    @classmethod
    def _parents(cls, value: Any) -> Any:
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("input_query", mode="before")
    @classmethod
    def _query(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            kept = {k: v for k, v in value.items() if v is not None and v != ""}
            return to_text(parse(kept)) if kept else None
        return value


class ProductionDefinition(BaseModel):
    """A production as the generic format writes it (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique among productions; transformation-name rules")
    description: str = Field("", max_length=1024)
    base_path: str | None = Field(None, description="Every step's outputs go under it")
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_transformation_name(value)
        except InvalidInput as exc:
            raise ValueError(exc.message.removeprefix("name: ")) from None

    @field_validator("base_path")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or "//" in value or "/../" in f"{value}/":
            raise ValueError("an absolute catalog directory (e.g. /ctao/MC/Prod6)")
        return value.rstrip("/") or "/"

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


# --- formats -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvertOptions:
    """What a format may need besides the file: the production's name (for formats that do
    not carry one; overrides the file's), the default number of MC tasks, the datasets."""

    name: str | None = None
    mc_tasks: int | None = None
    # A named catalog dataset's query as a mapping (None if no such dataset): formats that
    # inherit metadata from a dataset (CTADIRAC: site, particle, ... of a processing step)
    # read it through this.
    datasets: Callable[[str], Mapping[str, Any] | None] | None = None


@dataclass(frozen=True)
class ProductionFormat:
    """An input format: ``detect(raw)`` says whether a mapping is written in it, ``convert``
    turns it into the generic definition (a mapping)."""

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    convert: Callable[[Mapping[str, Any], ConvertOptions], dict[str, Any]]


@dataclass
class FormatRegistry:
    """The known formats, tried in registration order (the generic one last)."""

    formats: dict[str, ProductionFormat] = field(default_factory=dict)

    def register(self, fmt: ProductionFormat) -> None:
        self.formats[fmt.name] = fmt

    def detect(self, raw: Mapping[str, Any]) -> ProductionFormat:
        for fmt in sorted(self.formats.values(), key=lambda f: f.name == "generic"):
            if fmt.detect(raw):
                return fmt
        raise InvalidInput(
            "not a production definition in a known format ("
            + ", ".join(self.formats)
            + "): the generic format has 'name' and 'steps'",
            key="steps",
        )


def _detect_generic(raw: Mapping[str, Any]) -> bool:
    return "steps" in raw


def _convert_generic(raw: Mapping[str, Any], options: ConvertOptions) -> dict[str, Any]:
    out = dict(raw)
    if options.name is not None:
        out["name"] = options.name
    if options.mc_tasks is not None and isinstance(out.get("steps"), list):
        steps = []
        for step in out["steps"]:
            if isinstance(step, Mapping) and _is_mc(step):
                trans = dict(step.get("transformation") or {})
                if _find_key(trans, "max_tasks") is None:
                    trans["max_tasks"] = options.mc_tasks
                step = {**step, "transformation": trans}
            steps.append(step)
        out["steps"] = steps
    return out


def _is_mc(step: Mapping[str, Any]) -> bool:
    return not step.get("parents") and not step.get("dataset") and not step.get("input_query")


FORMATS = FormatRegistry()
FORMATS.register(ProductionFormat("generic", _detect_generic, _convert_generic))


def to_definition(
    raw: Mapping[str, Any],
    options: ConvertOptions | None = None,
    *,
    formats: FormatRegistry = FORMATS,
) -> ProductionDefinition:
    """The checked generic definition of a raw mapping in any registered format."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("a production definition is a mapping of keys to values")
    options = options or ConvertOptions()
    data = formats.detect(raw).convert(raw, options)
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InvalidInput("steps: a production has a list of 1 or more steps", key="steps")
    checked = [_step(i, s) for i, s in enumerate(steps)]
    try:
        definition = ProductionDefinition.model_validate({**data, "steps": checked})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "definition"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise InvalidInput(f"{key}: {msg.removeprefix('Value error, ')}", key=key) from None
    topological_order(definition)
    for step in definition.steps:
        _check_transformation_keys(step)
        step_trans_name(definition.name, step)
    return definition


def _step(index: int, raw: Any) -> Step:
    where = f"step #{index + 1}"
    if isinstance(raw, Mapping) and raw.get("id") is not None:
        where = f"step {raw['id']}"
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: a step is a mapping of keys to values", step=where)
    try:
        return Step.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "step"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        step = str(raw.get("id", f"#{index + 1}"))
        raise InvalidInput(
            f"{where}: {key}: {msg.removeprefix('Value error, ')}", step=step, key=key
        ) from None
    except InvalidInput as exc:  # a query that does not parse
        raise InvalidInput(
            f"{where}: input_query: {exc.message}", step=str(raw.get("id")), key="input_query"
        ) from None


def _find_key(raw: Mapping[str, Any], canonical: str) -> str | None:
    spellings = _spellings(canonical)
    return next((str(k) for k in raw if _squash(str(k)) in spellings), None)


def _check_transformation_keys(step: Step) -> None:
    for canonical in _MADE_BY_PRODUCTION:
        key = _find_key(step.transformation, canonical)
        if key is not None:
            raise InvalidInput(
                f"step {step.id}: transformation.{key}: set by the production (the name is "
                "<production>.<step id>; the input query comes from parents, dataset and the "
                "step's input_query)",
                step=step.id,
                key=f"transformation.{key}",
            )
    meta_key = _find_key(step.transformation, "output_metadata")
    meta = step.transformation.get(meta_key) if meta_key else None
    if isinstance(meta, Mapping) and STEP_FIELD in meta:
        raise InvalidInput(
            f"step {step.id}: transformation.{meta_key}.{STEP_FIELD}: set by the production",
            step=step.id,
            key=f"transformation.{meta_key}.{STEP_FIELD}",
        )


def step_trans_name(production: str, step: Step) -> str:
    """``<production>.<step id>[.<step name>]``, checked as a transformation name."""
    name = f"{production}.{step.id}" + (f".{step.name}" if step.name else "")
    try:
        return check_transformation_name(name)
    except InvalidInput:
        raise InvalidInput(
            f"step {step.id}: its transformation name {name!r} is not valid (at most 128 "
            "characters: shorten the production or step name)",
            step=step.id,
            key="name",
        ) from None


# --- the DAG -------------------------------------------------------------------------------
def topological_order(definition: ProductionDefinition) -> list[Step]:
    """The steps, each after its parents (otherwise in the order written); ``InvalidInput``
    naming the step for a duplicate id, an unknown parent or a cycle."""
    by_id: dict[str, Step] = {}
    for step in definition.steps:
        if step.id in by_id:
            raise InvalidInput(f"step {step.id}: the id is used twice", step=step.id, key="id")
        by_id[step.id] = step
    for step in definition.steps:
        for parent in step.parents:
            if parent == step.id:
                raise InvalidInput(
                    f"step {step.id}: it is its own parent", step=step.id, key="parents"
                )
            if parent not in by_id:
                raise InvalidInput(
                    f"step {step.id}: unknown parent step {parent!r} (steps: {', '.join(by_id)})",
                    step=step.id,
                    key="parents",
                )
        if len(set(step.parents)) != len(step.parents):
            raise InvalidInput(
                f"step {step.id}: a parent is named twice", step=step.id, key="parents"
            )
    order: list[Step] = []
    placed: set[str] = set()
    while len(order) < len(by_id):
        ready = [s for s in definition.steps if s.id not in placed and set(s.parents) <= placed]
        if not ready:
            stuck = [s.id for s in definition.steps if s.id not in placed]
            cycle = _cycle(by_id, stuck)
            raise InvalidInput(
                f"step {cycle[0]}: its parents form a cycle ({' -> '.join(cycle)})",
                step=cycle[0],
                key="parents",
                cycle=cycle,
            )
        order += ready
        placed.update(s.id for s in ready)
    return order


def _cycle(by_id: Mapping[str, Step], stuck: Sequence[str]) -> list[str]:
    """One cycle among the steps left unplaced, as ids (first repeated at the end)."""
    path: list[str] = [stuck[0]]
    while True:
        parent = next(p for p in by_id[path[-1]].parents if p in stuck)
        if parent in path:
            return [*path[path.index(parent) :], parent]
        path.append(parent)


# --- linking -------------------------------------------------------------------------------
def _own_conditions(step: Step, dataset: MetaQuery | None) -> list[Condition]:
    conds = list(dataset.conditions) if dataset is not None else []
    if step.input_query:
        conds += parse(step.input_query).conditions
    return conds


def check_compatibility(
    step: Step,
    parent: Step,
    parent_metadata: Mapping[str, Any],
    *,
    dataset: MetaQuery | None,
    schema: MetaSchema | None = None,
) -> None:
    """``InvalidInput`` naming the step, the parent and the keys whose conditions (the
    step's own query and its dataset's) refuse the value the parent's outputs carry. Values
    with ``{{placeholders}}`` vary per task: they are not checked."""
    bad: list[str] = []
    texts: list[str] = []
    for cond in _own_conditions(step, dataset):
        if cond.field not in parent_metadata:
            continue
        value = parent_metadata[cond.field]
        if isinstance(value, str) and "{{" in value:
            continue
        try:
            if schema is not None:
                value = coerce(cond.field, schema.field_type(cond.field), value)
            ok = matches(MetaQuery((cond,)), {cond.field: value})
        except InvalidInput:
            ok = False
        if not ok:
            bad.append(cond.field)
            texts.append(f"{to_text(MetaQuery((cond,)))} but step {parent.id} gives {value!r}")
    if bad:
        keys = sorted(set(bad))
        raise InvalidInput(
            f"step {step.id}: its input query cannot match the outputs of its parent step "
            f"{parent.id} on {', '.join(keys)} ({'; '.join(texts)})",
            step=step.id,
            key=keys[0],
            keys=keys,
            parent=parent.id,
        )


def output_metadata_of(step: Step) -> dict[str, Any]:
    """The output metadata a step's transformation declares (any accepted spelling)."""
    key = _find_key(step.transformation, "output_metadata")
    meta = step.transformation.get(key) if key else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def step_definition(
    definition: ProductionDefinition,
    step: Step,
    *,
    trans_id: int,
    parent_ids: Sequence[int],
    dataset: MetaQuery | None,
) -> dict[str, Any]:
    """The transformation definition of a step (module docstring), as ``trans create``
    takes it; ``trans_id`` is its own (or a stand-in while checking)."""
    raw = dict(step.transformation)
    raw["name"] = step_trans_name(definition.name, step)
    conds: list[Condition] = []
    if parent_ids:
        conds.append(Condition(STEP_FIELD, Op.IN, tuple(parent_ids)))
    conds += _own_conditions(step, dataset)
    if conds:
        try:
            raw["input_query"] = to_text(MetaQuery(tuple(conds)))
        except InvalidInput as exc:
            raise InvalidInput(
                f"step {step.id}: input_query: {exc.message} (with its dataset's query and the "
                "link to its parents)",
                step=step.id,
                key="input_query",
            ) from None
    meta_key = _find_key(raw, "output_metadata") or "output_metadata"
    raw[meta_key] = {**output_metadata_of(step), STEP_FIELD: trans_id}
    if step.input_limit is not None:
        raw["input_limit"] = step.input_limit
    if not _find_key(raw, "description") and definition.description:
        raw["description"] = f"{definition.description} (step {step.id})"[:1024]
    return raw
