"""The definition of a transformation as users write it (YAML or JSON), and its checks.

One canonical model, :class:`TransformationSpec`. :func:`check_definition` reads what a user
wrote (keys in canonical or CTADIRAC/DIRAC spelling, see ``ALIASES``), checks it against the
type and plugin registries, the catalog's declared metadata fields (a mapping field -> type:
the declarations live in the database, the caller reads them) and the areas the outputs may
go to, and returns the canonical spec, or raises one ``InvalidInput`` whose message names the
key (and whose ``detail`` has ``key`` and, when pydantic found several, ``errors``). Nothing
here touches the database: a definition that passes can be created in one transaction.

:func:`render_task_job` makes one task's job description from the spec: the job template with
its placeholders filled (see :mod:`ctaprod.core.trans_templates`), InputData = the task's
files, OutputData = the LFNs of the output templates, OutputMetadata = the output metadata,
OutputFileMetadata = each output's own metadata (``output_file_metadata``, one mapping per
output template, e.g. the NSB of each sim_telarray output of one MC run; with
``inherit_metadata``, the fields each output takes from its input files), JobGroup = the
transformation ID (8 digits, as DIRAC), validated as ``job submit`` validates.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ctaprod.core.errors import InvalidInput
from ctaprod.core.grouping import PLUGINS, PluginRegistry
from ctaprod.core.jobdesc import SubmissionLimits, expand, normalize_keys
from ctaprod.core.jobs import JobDescription
from ctaprod.core.metaquery import FieldType, MetaSchema, coerce, parse, to_text, validate
from ctaprod.core.parametric import parametric_key
from ctaprod.core.trans_templates import (
    IN_JOB,
    IN_METADATA,
    INPUT_PLACEHOLDERS,
    OUTPUT_PLACEHOLDERS,
    PER_INPUT,
    TaskValues,
    check_output_template,
    placeholders_in,
    render_lfns,
    substitute,
)
from ctaprod.core.trans_types import TYPES, TaskKind, TransformationType, TypeRegistry

__all__ = [
    "ALIASES",
    "TransformationSpec",
    "check_definition",
    "check_transformation_name",
    "job_group",
    "load_definition",
    "render_task_job",
]

MAX_NAME = 128  # the database column
MAX_DESCRIPTION = 1024
NAME_PATTERN = re.compile(rf"[A-Za-z][A-Za-z0-9_.+-]{{0,{MAX_NAME - 1}}}")
MAX_TASKS = 10_000_000
MAX_RUN_NUMBER = 2**31 - 1
MAX_PARAMETERS = 100
# Set by the transformation for each task: a template may not write them.
RESERVED_JOB_KEYS = (
    "InputData", "OutputData", "OutputPath", "OutputMetadata", "OutputFileMetadata", "JobGroup",
)  # fmt: skip
# Production-level keys a CTADIRAC input_meta_query carries; not metadata fields.
PRODUCTION_KEYS = {"dataset": "a dataset's name", "parentID": "a parent step"}
SAMPLE_INPUT = "/sample/input/file_000001.dat"


def check_transformation_name(name: object) -> str:
    """A name: a letter, then letters, digits and ``_ . + -``, at most 128; never all digits
    (so that a name and an ID are never confused on the command line)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name: invalid transformation name {name!r}: start with a letter, then letters, "
            f"digits and '_.+-', at most {MAX_NAME} characters",
            key="name",
        )
    return name


class TransformationSpec(BaseModel):
    """A transformation definition, canonical: the type and plugin in their registered
    spelling, the plugin and group size resolved (None for types without input), the input
    query in the catalog's compact text form, output templates as a list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique; a letter then letters, digits and _.+-")
    type: str = Field(description="A registered transformation type")
    description: str = Field("", max_length=MAX_DESCRIPTION)
    input_query: str | None = Field(None, description="Catalog query (compact text)")
    plugin: str | None = Field(None, description="Grouping plugin (default: the type's)")
    group_size: int | None = Field(None, ge=1, description="Files, or bytes for BySize")
    group_by: list[str] = Field(default_factory=list, max_length=16)
    job_template: dict[str, Any] | None = Field(None, description="A job description")
    output_metadata: dict[str, Any] = Field(default_factory=dict)
    output_lfn_template: list[str] = Field(default_factory=list, max_length=16)
    output_file_metadata: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=16,
        description="Per output template (same order): metadata over output_metadata",
    )
    max_tasks: int | None = Field(None, ge=1, le=MAX_TASKS)
    max_errors: int = Field(5, ge=1, le=100, description="Failures of a file before MaxReset")
    run_number_start: int | None = Field(None, ge=0, le=MAX_RUN_NUMBER)
    parameters: dict[str, Any] = Field(default_factory=dict)
    input_limit: int | None = Field(
        None, ge=1, description="Test mode: at most this many input files are attached"
    )
    inherit_metadata: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Fields each output takes from its input file(s) (observation data: "
        "night, telescope, run)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_transformation_name(value)
        except InvalidInput as exc:
            raise ValueError(exc.message.removeprefix("name: ")) from None

    @field_validator("output_lfn_template", "group_by", "inherit_metadata", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("group_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return _bytes(value) if isinstance(value, str) else value

    @field_validator(
        "group_size", "max_tasks", "max_errors", "run_number_start", "input_limit", mode="before"
    )
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        # YAML reads yes/no/true as booleans, which pydantic would take as 1 and 0.
        if isinstance(value, bool):
            raise ValueError("a number, not a boolean")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"more than {MAX_PARAMETERS} parameters")
        if len(json.dumps(value, default=str)) > 65536:
            raise ValueError("longer than 64 KiB as JSON")
        return value

    def run_number_of(self, ordinal: int) -> int | None:
        """The run number of the ``ordinal``-th task made by the transformation (1 for the
        first; the database counts the tasks made), None for types without run numbers."""
        if self.run_number_start is None:
            return None
        return self.run_number_start + ordinal - 1

    def per_input_outputs(self) -> list[bool]:
        """For each output template, whether it makes one output per input file."""
        return [
            any(h.name in PER_INPUT for h in placeholders_in(t, IN_JOB, "output_lfn_template"))
            for t in self.output_lfn_template
        ]


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE_TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


def _bytes(text: str) -> int:
    """``"10 GB"`` -> 10_000_000_000; ``"2GiB"``; a plain number of bytes."""
    match = _SIZE_TEXT.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 500, 10 GB, 2 GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def _squash(key: str) -> str:
    return re.sub(r"[_\-\s]", "", key).lower()


# What a CTADIRAC or DIRAC user may write for each canonical key.
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("TransformationName", "trans_name"),
    "type": ("TransformationType",),
    "description": ("LongDescription",),
    "input_query": ("input_meta_query", "InputMetaQuery", "meta_query", "query"),
    "plugin": (),
    "group_size": (),
    "group_by": ("GroupByKeys", "group_keys"),
    "job_template": ("job", "job_description"),
    "output_metadata": ("output_meta", "OutputMetaData"),
    "output_lfn_template": ("output_lfns", "output_lfn", "output_template"),
    "output_file_metadata": ("OutputFileMetadata", "output_file_meta"),
    "max_tasks": ("MaxNumberOfTasks", "max_number_of_tasks"),
    "max_errors": ("max_errors_per_file", "MaxResetCounter"),
    "run_number_start": ("start_run_number", "first_run_number"),
    "parameters": ("params",),
    "input_limit": (),
    "inherit_metadata": ("InheritMetadata", "inherited_metadata"),
}
_SPELLINGS = {_squash(k): k for k in ALIASES} | {
    _squash(a): k for k, aliases in ALIASES.items() for a in aliases
}


def _canonical_keys(raw: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in raw.items():
        canonical = _SPELLINGS.get(_squash(str(key)))
        if canonical is None:
            close = difflib.get_close_matches(_squash(str(key)), list(_SPELLINGS), n=1)
            hint = f" (did you mean '{_SPELLINGS[close[0]]}'?)" if close else ""
            raise InvalidInput(
                f"{key}: unknown key{hint}; known keys: {', '.join(ALIASES)}", key=str(key)
            )
        if canonical in written:
            raise InvalidInput(
                f"{canonical}: given twice (as '{written[canonical]}' and '{key}')",
                key=canonical,
            )
        written[canonical] = str(key)
        out[canonical] = value
    return out


def _pydantic_error(exc: ValidationError) -> InvalidInput:
    errors = exc.errors()
    texts = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or "definition"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        texts.append(f"{loc}: {msg}")
    first = ".".join(str(p) for p in errors[0]["loc"])
    return InvalidInput("; ".join(texts), key=first, errors=texts)


class _TextDates(yaml.SafeLoader):
    """YAML without implicit timestamps: ``version: 2024-02-05`` (a CTA software version)
    stays the text written, not a date that JSON cannot carry."""


_TextDates.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_definition(text: str) -> dict[str, Any]:
    """The mapping written in a YAML or JSON file (JSON is YAML); dates stay text."""
    try:
        data = yaml.load(text, Loader=_TextDates)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"cannot read the transformation definition: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("a transformation definition is a mapping of keys to values")
    return data


def check_definition(
    raw: Mapping[str, Any],
    *,
    fields: Mapping[str, FieldType | str] | MetaSchema,
    bases: Sequence[str],
    types: TypeRegistry = TYPES,
    plugins: PluginRegistry = PLUGINS,
    limits: SubmissionLimits | None = None,
) -> TransformationSpec:
    """The canonical spec of a definition, or ``InvalidInput`` naming the bad key.

    ``fields``: the catalog's declared metadata fields and their types; ``bases``: the
    directories output LFN templates may write under (the transformation's and the owner's
    areas); ``limits``: the job submission limits a task's job must respect.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("a transformation definition is a mapping of keys to values")
    data = _canonical_keys(raw)
    if "input_query" in data:
        data["input_query"] = _query_input(data["input_query"])
    try:
        spec = TransformationSpec.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc) from None
    schema = fields if isinstance(fields, MetaSchema) else MetaSchema(fields)
    ttype = types.get(spec.type)
    update: dict[str, Any] = {"type": ttype.name}
    update |= _check_input(spec, ttype, plugins, schema)
    _check_counts(spec, ttype, update, limits or SubmissionLimits())
    if ttype.tasks is TaskKind.REQUEST:
        for key in (
            "job_template",
            "output_lfn_template",
            "output_metadata",
            "output_file_metadata",
            "inherit_metadata",
        ):
            if getattr(spec, key):
                raise InvalidInput(
                    f"{key}: {ttype.name} tasks are requests, not jobs: no {key}", key=key
                )
        ttype.check_parameters(spec.parameters)
        return spec.model_copy(update=update)
    checked = spec.model_copy(update=update)
    _check_outputs(checked, ttype, schema, bases)
    _check_job_template(checked, limits or SubmissionLimits())
    return checked


def _query_input(value: Any) -> Any:
    """A CTADIRAC ``input_meta_query``: empty entries mean "not set"; ``dataset`` and
    ``parentID`` belong to productions, which resolve them before making transformations."""
    if not isinstance(value, Mapping):
        return value
    kept = {k: v for k, v in value.items() if v is not None and v != ""}
    for key, what in PRODUCTION_KEYS.items():
        if key in kept:
            raise InvalidInput(
                f"input_query.{key}: names {what}, which a production resolves; a "
                "transformation takes the metadata query itself",
                key=f"input_query.{key}",
            )
    if not kept:
        return None
    try:
        return to_text(parse(kept))
    except InvalidInput as exc:
        raise InvalidInput(f"input_query: {exc.message}", key="input_query") from None


def _check_input(
    spec: TransformationSpec,
    ttype: TransformationType,
    plugins: PluginRegistry,
    schema: MetaSchema,
) -> dict[str, Any]:
    if not ttype.needs_input:
        for key in ("input_query", "plugin", "group_size", "input_limit"):
            if getattr(spec, key) is not None:
                raise InvalidInput(
                    f"{key}: {ttype.name} tasks have no input files: no {key}", key=key
                )
        for key in ("group_by", "inherit_metadata"):
            if getattr(spec, key):
                raise InvalidInput(f"{key}: {ttype.name} tasks have no input", key=key)
        return {}
    try:
        query = validate(spec.input_query or "", schema)
    except InvalidInput as exc:
        raise InvalidInput(f"input_query: {exc.message}", key="input_query") from None
    if not query.conditions:
        raise InvalidInput(
            f"input_query: a {ttype.name} transformation needs an input query (an empty "
            "query would take every file of the catalog)",
            key="input_query",
        )
    plugin = plugins.get(spec.plugin or ttype.default_plugin or "")
    if plugin.name not in ttype.plugins:
        raise InvalidInput(
            f"plugin: {ttype.name} transformations use {', '.join(sorted(ttype.plugins))}, "
            f"not {plugin.name}",
            key="plugin",
        )
    size = plugin.check_size(spec.group_size)
    if plugin.needs_keys and not spec.group_by:
        raise InvalidInput(f"group_by: the {plugin.name} plugin needs keys", key="group_by")
    if spec.group_by and not plugin.needs_keys:
        raise InvalidInput(f"group_by: the {plugin.name} plugin takes no keys", key="group_by")
    for key in spec.group_by:
        try:
            schema.field_type(key)
        except InvalidInput as exc:
            raise InvalidInput(f"group_by: {exc.message}", key="group_by") from None
    return {"input_query": to_text(query), "plugin": plugin.name, "group_size": size}


def _check_counts(
    spec: TransformationSpec,
    ttype: TransformationType,
    update: dict[str, Any],
    limits: SubmissionLimits,
) -> None:
    if ttype.needs_max_tasks and spec.max_tasks is None:
        raise InvalidInput(
            f"max_tasks: a {ttype.name} transformation needs a maximum number of tasks "
            "(it has no input to run out of)",
            key="max_tasks",
        )
    if ttype.run_numbers:
        update["run_number_start"] = 1 if spec.run_number_start is None else spec.run_number_start
        last = update["run_number_start"] + (spec.max_tasks or 1) - 1
        if last > MAX_RUN_NUMBER:
            raise InvalidInput(
                f"run_number_start: the last run number {last} is above {MAX_RUN_NUMBER}",
                key="run_number_start",
            )
    elif spec.run_number_start is not None:
        raise InvalidInput(
            f"run_number_start: {ttype.name} tasks have no run numbers", key="run_number_start"
        )
    size = update.get("group_size")
    if (
        ttype.tasks is TaskKind.JOB
        and update.get("plugin") in ("Standard", "ByMetadata")
        and size is not None
        and size > limits.max_input_data
    ):
        raise InvalidInput(
            f"group_size {size}: a task's job may have at most {limits.max_input_data} "
            "InputData files (the server's max_input_data)",
            key="group_size",
        )


def _check_outputs(
    spec: TransformationSpec, ttype: TransformationType, schema: MetaSchema, bases: Sequence[str]
) -> None:
    for index, template in enumerate(spec.output_lfn_template):
        where = "output_lfn_template" + (f"[{index}]" if len(spec.output_lfn_template) > 1 else "")
        check_output_template(
            template, bases=bases, run_numbers=ttype.run_numbers, has_input=ttype.needs_input,
            where=where,
        )  # fmt: skip
    _check_distinct_suffixes(spec.output_lfn_template)
    if spec.output_file_metadata and len(spec.output_file_metadata) != len(
        spec.output_lfn_template
    ):
        raise InvalidInput(
            f"output_file_metadata: {len(spec.output_file_metadata)} mappings for "
            f"{len(spec.output_lfn_template)} output LFN templates (one per template, in order)",
            key="output_file_metadata",
        )
    _check_metadata(spec, spec.output_metadata, "output_metadata", schema)
    for index, extra in enumerate(spec.output_file_metadata):
        _check_metadata(spec, extra, f"output_file_metadata[{index}]", schema)
    _check_inherited(spec, schema)


def _check_inherited(spec: TransformationSpec, schema: MetaSchema) -> None:
    """Inherited fields are declared, and set nowhere else: an output's value of a field
    comes from one place."""
    fixed = set(spec.output_metadata) | {k for m in spec.output_file_metadata for k in m}
    for key in spec.inherit_metadata:
        try:
            schema.field_type(key)
        except InvalidInput as exc:
            raise InvalidInput(f"inherit_metadata: {exc.message}", key="inherit_metadata") from None
        if key in fixed:
            raise InvalidInput(
                f"inherit_metadata: {key} is also set by output_metadata (or "
                "output_file_metadata): an output takes it from one place",
                key="inherit_metadata",
            )
    if spec.inherit_metadata and not spec.output_lfn_template:
        raise InvalidInput(
            "inherit_metadata: the transformation has no output LFN template",
            key="inherit_metadata",
        )


def _check_metadata(
    spec: TransformationSpec, metadata: Mapping[str, Any], where_: str, schema: MetaSchema
) -> None:
    """Declared fields, one value of the field's type each (placeholders rendered for a
    sample task)."""
    sample = _sample(spec)
    for key, value in metadata.items():
        where = f"{where_}.{key}"
        try:
            ftype = schema.field_type(str(key))
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}", key=where) from None
        rendered = substitute(value, _allowed(IN_METADATA, spec), sample, where)
        if isinstance(rendered, list | dict) or rendered is None:
            raise InvalidInput(f"{where}: a metadata value is one number, text or date", key=where)
        try:
            coerce(str(key), ftype, rendered)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}", key=where) from None


def _check_distinct_suffixes(templates: Sequence[str]) -> None:
    """Two templates of one transformation never render the same LFN when the literal
    text after their last placeholder differs and neither is a suffix of the other: equal
    LFNs would end with both."""
    tails = [re.split(r"\}\}", t)[-1] for t in templates]
    for i, first in enumerate(tails):
        for j in range(i + 1, len(tails)):
            second = tails[j]
            if first.endswith(second) or second.endswith(first):
                raise InvalidInput(
                    f"output_lfn_template[{j}]: may give the same LFN as "
                    f"output_lfn_template[{i}] (their endings {first!r} and {second!r} "
                    "overlap): give each output its own ending (e.g. .DL2.h5, .log.tgz)",
                    key="output_lfn_template",
                )


def _sample(spec: TransformationSpec) -> TaskValues:
    return TaskValues(
        transformation_id=1,
        transformation=spec.name,
        task_id=1,
        run_number=spec.run_number_of(1),
        input_lfns=(SAMPLE_INPUT,) if spec.input_query else (),
    )


def _check_job_template(spec: TransformationSpec, limits: SubmissionLimits) -> None:
    if spec.job_template is None:
        raise InvalidInput(
            f"job_template: {spec.type} tasks are jobs: give the job description",
            key="job_template",
        )
    try:
        attrs = normalize_keys(spec.job_template)
    except InvalidInput as exc:
        raise InvalidInput(f"job_template: {exc.message}", key="job_template") from None
    for key in attrs:
        if key in RESERVED_JOB_KEYS:
            raise InvalidInput(
                f"job_template.{key}: set by the transformation for each task (input files, "
                "output_lfn_template, output_metadata, the transformation as JobGroup)",
                key=f"job_template.{key}",
            )
        if parametric_key(key) is not None:
            raise InvalidInput(
                f"job_template.{key}: a task is one job; a parametric template would make "
                "several (use max_tasks and {{run_number}} or {{task_id}})",
                key=f"job_template.{key}",
            )
    sample = _sample(spec)
    render_task_job(
        spec,
        transformation_id=sample.transformation_id,
        task_id=sample.task_id,
        input_lfns=sample.input_lfns,
        run_number=sample.run_number,
        limits=limits,
    )


def _inherited(
    spec: TransformationSpec,
    per_template: Sequence[Sequence[str]],
    input_metadata: Sequence[Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Output LFN -> the inherited fields it carries: an output made from one input file
    (``{{input_name}}``/``{{input_stem}}`` templates) takes that file's values; an output made
    from all the task's files takes the values they all share (a field whose values differ,
    or that one of them lacks, is not set)."""
    fields = spec.inherit_metadata
    shared: dict[str, Any] = {}
    if input_metadata:
        first = input_metadata[0]
        shared = {
            k: first[k]
            for k in fields
            if k in first and all(k in m and m[k] == first[k] for m in input_metadata)
        }
    out: dict[str, dict[str, Any]] = {}
    for lfns, each in zip(per_template, spec.per_input_outputs(), strict=True):
        for index, lfn in enumerate(lfns):
            if each and index < len(input_metadata):
                own = input_metadata[index]
                values = {k: own[k] for k in fields if k in own}
            else:
                values = dict(shared)
            if values:
                # A date field's value goes into the job as its ISO text (JSON).
                out[lfn] = {
                    k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()
                }
    return out


def _allowed(where: frozenset[str], spec: TransformationSpec) -> frozenset[str]:
    """The placeholders of ``where`` that have a value for this transformation's tasks."""
    missing = set()
    if spec.run_number_start is None:
        missing.add("run_number")
    if spec.input_query is None:
        missing |= INPUT_PLACEHOLDERS
    if not spec.output_lfn_template:
        missing |= OUTPUT_PLACEHOLDERS
    return where - missing


def job_group(transformation_id: int) -> str:
    """The JobGroup of a transformation's jobs: its ID in 8 digits, as DIRAC writes it."""
    return f"{transformation_id:08d}"


def render_task_job(
    spec: TransformationSpec,
    *,
    transformation_id: int,
    task_id: int,
    input_lfns: Sequence[str],
    limits: SubmissionLimits,
    run_number: int | None = None,
    input_metadata: Sequence[Mapping[str, Any]] | None = None,
) -> JobDescription:
    """The job description of one task (module docstring), or ``InvalidInput`` naming the
    template key that did not render to a valid job. ``run_number``: the task's, for types
    with run numbers (``spec.run_number_of``), kept with the task when it was made.
    ``input_metadata``: each input file's values of ``spec.inherit_metadata`` (same order as
    ``input_lfns``), for the outputs to inherit them."""
    if spec.job_template is None:
        raise InvalidInput(f"{spec.type} tasks are not jobs", key="job_template")
    if (run_number is None) != (spec.run_number_start is None):
        raise ValueError(
            f"{spec.type} tasks {'need' if run_number is None else 'have no'} run numbers"
        )
    values = TaskValues(transformation_id, spec.name, task_id, run_number, tuple(input_lfns))
    per_template = [
        render_lfns([template], values, [each])
        for template, each in zip(spec.output_lfn_template, spec.per_input_outputs(), strict=True)
    ]
    outputs = [lfn for lfns in per_template for lfn in lfns]
    if len(set(outputs)) != len(outputs):
        twice = next(o for o in outputs if outputs.count(o) > 1)
        raise InvalidInput(
            f"output_lfn_template: task {task_id} would write {twice!r} twice (two input "
            "files with the same name?)",
            key="output_lfn_template",
            lfn=twice,
        )
    values = TaskValues(
        values.transformation_id,
        values.transformation,
        values.task_id,
        values.run_number,
        values.input_lfns,
        tuple(outputs),
    )
    body = substitute(spec.job_template, _allowed(IN_JOB, spec), values, "job_template")
    given = {str(k).lower() for k in body}
    if "jobname" not in given:
        body["JobName"] = f"{job_group(transformation_id)}_{task_id:08d}"
    if "jobtype" not in given:
        body["JobType"] = spec.type
    body["JobGroup"] = job_group(transformation_id)
    if input_lfns:
        body["InputData"] = [f"LFN:{lfn}" for lfn in input_lfns]
    if outputs:
        body["OutputData"] = [f"LFN:{lfn}" for lfn in outputs]
    if spec.output_metadata:
        body["OutputMetadata"] = substitute(
            spec.output_metadata, _allowed(IN_METADATA, spec), values, "output_metadata"
        )
    if spec.output_file_metadata:
        own: dict[str, Any] = {}
        for index, (lfns, extra) in enumerate(
            zip(per_template, spec.output_file_metadata, strict=True)
        ):
            rendered = substitute(
                extra, _allowed(IN_METADATA, spec), values, f"output_file_metadata[{index}]"
            )
            own |= {lfn: rendered for lfn in lfns if rendered}
        if own:
            body["OutputFileMetadata"] = own
    if spec.inherit_metadata and input_metadata is not None:
        inherited = _inherited(spec, per_template, input_metadata)
        if inherited:
            own = body.get("OutputFileMetadata", {})
            body["OutputFileMetadata"] = {
                lfn: {**own.get(lfn, {}), **inherited.get(lfn, {})}
                for lfn in [*own, *(k for k in inherited if k not in own)]
            }
    try:
        jobs = expand(body, limits)
    except InvalidInput as exc:
        detail = {**exc.detail, "key": "job_template"}
        raise InvalidInput(f"job_template: {exc.message}", **detail) from None
    return jobs[0]
