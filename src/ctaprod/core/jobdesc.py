"""Turn a submitted description (DIRAC JDL, YAML or JSON) into validated job descriptions.

Parametric jobs (``Parameters``, ``ParameterStart``, ``ParameterStep``, ``ParameterFactor``)
expand into one description per parameter value; in string attributes ``%s`` becomes the
parameter value and ``%n`` its index (zero-padded to the width of the last index, as
DIRAC does). ``%j`` (the job ID) is kept until the job is matched,
when the ID is known (see :func:`substitute_job_id`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from ctaprod.core.errors import InvalidInput, TooLarge
from ctaprod.core.jdl import JDLSyntaxError, parse_jdl
from ctaprod.core.jobs import JobDescription

# Blank space and JDL comments (#, //, /* */) before the first statement; a YAML document
# starting with a '#' comment is YAML either way, so treating it as a comment is harmless.
_LEADING_COMMENTS = re.compile(r"(?:\s+|#[^\n]*|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_JSON_START = re.compile(r"\{|\[\s*[{\]]")
_JDL_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[ \t]*=")
PARAMETRIC_KEYS = ("Parameters", "ParameterStart", "ParameterStep", "ParameterFactor")
# DIRAC keys that a JDL may carry but that the server sets itself or that have no effect here.
IGNORED_KEYS = frozenset(
    {
        "Owner",
        "OwnerDN",
        "OwnerGroup",
        "VirtualOrganization",
        "DIRACSetup",
        "Origin",
        "LogLevel",
        "SubmitPools",
        "Requirements",
        "JobRequirements",
        "JobID",
        "Status",
        "MinorStatus",
        "ExecutionEnvironment",
        "Type",
        "SystemConfig",
    }
)


@dataclass(frozen=True)
class SubmissionLimits:
    min_cpu_time: int = 1
    max_cpu_time: int = 7 * 86400
    max_parametric_jobs: int = 10_000
    max_input_data: int = 500
    max_jobs_per_call: int = 10_000


def _alias_map() -> dict[str, str]:
    out = {}
    for name, field in JobDescription.model_fields.items():
        out[(field.alias or name).lower()] = field.alias or name
        out[name.lower()] = field.alias or name
    return out


ALIASES = _alias_map()
KNOWN = sorted({f.alias or n for n, f in JobDescription.model_fields.items()})


def guess_format(text: str) -> str:
    """jdl, yaml or json, from the first thing that is not blank or a JDL comment."""
    head = _LEADING_COMMENTS.sub("", text)
    if _JSON_START.match(head):
        return "json"
    if head.startswith("[") or _JDL_ASSIGNMENT.match(head):
        return "jdl"
    return "yaml"


def load_document(text: str, fmt: str = "auto") -> dict[str, Any] | list[dict[str, Any]]:
    """Parse text as JDL, YAML or JSON (``fmt`` = jdl|yaml|json|auto)."""
    if fmt == "auto":
        fmt = guess_format(text)
    if fmt == "jdl":
        try:
            return dict(parse_jdl(text))
        except JDLSyntaxError as exc:
            raise InvalidInput(str(exc), line=exc.line, column=exc.column) from exc
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot parse the job description as {fmt}: {exc}") from exc
    if isinstance(data, dict):
        return data
    if isinstance(data, list) and all(isinstance(d, dict) for d in data):
        return data
    raise InvalidInput(f"a job description in {fmt} must be a mapping or a list of mappings")


def normalize_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Map keys to their canonical DIRAC spelling; reject unknown keys with a suggestion."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in PARAMETRIC_KEYS or key in IGNORED_KEYS:
            out[key] = value
            continue
        canonical = ALIASES.get(str(key).lower())
        if canonical is None:
            lowered = [k.lower() for k in PARAMETRIC_KEYS] + [k.lower() for k in IGNORED_KEYS]
            if str(key).lower() in lowered:
                canonical = next(
                    k for k in (*PARAMETRIC_KEYS, *IGNORED_KEYS) if k.lower() == str(key).lower()
                )
            else:
                close = difflib.get_close_matches(str(key), KNOWN, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise InvalidInput(f"unknown job attribute '{key}'{hint}", attribute=key)
        if canonical in out:
            raise InvalidInput(f"job attribute '{canonical}' given twice", attribute=canonical)
        out[canonical] = value
    return out


def _parameter_values(attrs: Mapping[str, Any], limits: SubmissionLimits) -> list[Any] | None:
    params = attrs.get("Parameters")
    if params is None:
        for key in PARAMETRIC_KEYS[1:]:
            if key in attrs:
                raise InvalidInput(f"'{key}' needs 'Parameters'", attribute=key)
        return None
    if isinstance(params, list):
        values = list(params)
    elif isinstance(params, int) and not isinstance(params, bool):
        if params < 1:
            raise InvalidInput("'Parameters' must be at least 1", attribute="Parameters")
        if params > limits.max_parametric_jobs:
            raise TooLarge(
                f"{params} parametric jobs requested, the limit is {limits.max_parametric_jobs}",
                attribute="Parameters",
            )
        # DIRAC's defaults: start 1, step 0, factor 1.
        start = attrs.get("ParameterStart", 1)
        step = attrs.get("ParameterStep", 0)
        factor = attrs.get("ParameterFactor", 1)
        for key, val in zip(PARAMETRIC_KEYS[1:], (start, step, factor), strict=True):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise InvalidInput(f"'{key}' must be a number, not {val!r}", attribute=key)
        values, value = [], start
        for _ in range(params):
            values.append(value)
            value = value * factor + step
    else:
        raise InvalidInput("'Parameters' must be a number or a list", attribute="Parameters")
    if not values:
        raise InvalidInput("'Parameters' is an empty list", attribute="Parameters")
    if len(values) > limits.max_parametric_jobs:
        raise TooLarge(
            f"{len(values)} parametric jobs requested, the limit is {limits.max_parametric_jobs}",
            attribute="Parameters",
        )
    return values


def _fmt_param(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _substitute(value: Any, param: str, index: str) -> Any:
    if isinstance(value, str):
        return value.replace("%s", param).replace("%n", index)
    if isinstance(value, list):
        return [_substitute(v, param, index) for v in value]
    return value


def _validate(attrs: Mapping[str, Any], limits: SubmissionLimits, where: str) -> JobDescription:
    body = {k: v for k, v in attrs.items() if k not in IGNORED_KEYS and k not in PARAMETRIC_KEYS}
    try:
        desc = JobDescription.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "description"
        raise InvalidInput(
            f"{where}job attribute '{loc}': {first['msg']}", attribute=loc, errors=len(exc.errors())
        ) from None
    if not limits.min_cpu_time <= desc.cpu_time <= limits.max_cpu_time:
        raise InvalidInput(
            f"{where}CPUTime {desc.cpu_time} is outside "
            f"[{limits.min_cpu_time}, {limits.max_cpu_time}] seconds",
            attribute="CPUTime",
        )
    if len(desc.input_data) > limits.max_input_data:
        raise InvalidInput(
            f"{where}{len(desc.input_data)} InputData files, the limit is {limits.max_input_data}",
            attribute="InputData",
        )
    return desc


def expand(raw: Mapping[str, Any], limits: SubmissionLimits) -> list[JobDescription]:
    """Validate one description; a parametric one gives one JobDescription per value."""
    attrs = normalize_keys(raw)
    values = _parameter_values(attrs, limits)
    if values is None:
        return [_validate(attrs, limits, "")]
    out = []
    width = len(str(len(values) - 1))  # DIRAC zero-pads %n to the width of the last index
    for index, value in enumerate(values):
        param = _fmt_param(value)
        sub = {k: _substitute(v, param, str(index).zfill(width)) for k, v in attrs.items()}
        out.append(_validate(sub, limits, f"parametric job {index}: "))
    return out


def parse_submission(text: str, fmt: str, limits: SubmissionLimits) -> list[JobDescription]:
    """Parse and expand a whole submission (one document, or a list of documents)."""
    doc = load_document(text, fmt)
    docs = doc if isinstance(doc, list) else [doc]
    jobs: list[JobDescription] = []
    for raw in docs:
        jobs.extend(expand(raw, limits))
        if len(jobs) > limits.max_jobs_per_call:
            raise TooLarge(f"more than {limits.max_jobs_per_call} jobs in one submission")
    if not jobs:
        raise InvalidInput("the submission holds no job")
    return jobs


def substitute_job_id(desc: JobDescription, job_id: int) -> JobDescription:
    """Replace the ``%j`` placeholder by the job ID (done when the job is handed to a pilot)."""
    data = desc.model_dump()
    for key, value in data.items():
        if isinstance(value, str):
            data[key] = value.replace("%j", str(job_id))
        elif isinstance(value, list):
            data[key] = [v.replace("%j", str(job_id)) if isinstance(v, str) else v for v in value]
    return JobDescription.model_validate(data)
