"""Turn a submitted description (DIRAC JDL, YAML or JSON) into validated job descriptions.

Parametric jobs (``Parameters[.X]``, ``ParameterStart[.X]``, ``ParameterStep[.X]``,
``ParameterFactor[.X]``) expand into one description per job with DIRAC's placeholders
``%s``, ``%(X)s`` and ``%n`` (see :mod:`ctaprod.core.parametric`). ``%j`` (the job ID) is
kept until the job ID is known (see :func:`substitute_job_id`).

Attributes ctaprod does not know are kept, as DIRAC keeps them, as the job's custom
attributes (shown as job parameters); a name one or two edits away from a known attribute
(``Exectuable``) is refused as a likely typo, with the suggestion.
"""

from __future__ import annotations

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
from ctaprod.core.lfn import check_lfn
from ctaprod.core.parametric import (
    PARAMETRIC_KEYS,
    Substitution,
    parameter_sets,
    parametric_key,
    set_label,
)

# Blank space and JDL comments (#, //, /* */) before the first statement; a YAML document
# starting with a '#' comment is YAML either way, so treating it as a comment is harmless.
_LEADING_COMMENTS = re.compile(r"(?:\s+|#[^\n]*|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_JSON_START = re.compile(r"\{|\[\s*[{\]]")
_JDL_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[ \t]*=")
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
        "Type",
        "SystemConfig",
    }
)
# Names DIRAC writes that look like typos of ours but are not: the values a parametric job
# expanded by DIRAC carries (``Parameter``, ``Parameter.X``, ``ParameterNumber``).
DIRAC_KEPT = ("Parameter", "ParameterNumber")
# DIRAC reads "Tag" as well as "Tags".
_SYNONYMS = {"tag": "Tags"}


@dataclass(frozen=True)
class SubmissionLimits:
    min_cpu_time: int = 1
    max_cpu_time: int = 7 * 86400
    max_parametric_jobs: int = 10_000
    max_input_data: int = 10_000
    max_jobs_per_call: int = 10_000


def _alias_map() -> dict[str, str]:
    out = {}
    for name, field in JobDescription.model_fields.items():
        out[(field.alias or name).lower()] = field.alias or name
        out[name.lower()] = field.alias or name
    return out


ALIASES = _alias_map()
_FIELD_KEYS = frozenset(ALIASES.values())
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


def _distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (``Exectuable`` is one from
    ``Executable``)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


_TYPO_TARGETS = sorted({*KNOWN, *PARAMETRIC_KEYS} - {"custom_attributes"})


def likely_typo(key: str) -> str | None:
    """The known attribute ``key`` is probably a misspelling of: one edit away from a name
    of up to 6 letters, two from a longer one (letter case aside); else None."""
    lowered = key.lower()
    if lowered in (k.lower() for k in DIRAC_KEPT) or lowered.startswith("parameter."):
        return None
    best: tuple[int, str] | None = None
    for known in _TYPO_TARGETS:
        limit = 1 if len(known) <= 6 else 2
        if abs(len(known) - len(key)) > limit:
            continue
        dist = _distance(lowered, known.lower())
        if dist <= limit and (best is None or dist < best[0]):
            best = (dist, known)
    return best[1] if best else None


def _canonical(key: str) -> str | None:
    """The canonical spelling of a known, parametric or ignored key; None for others."""
    lowered = key.lower()
    if lowered in ALIASES:
        return ALIASES[lowered]
    if lowered in _SYNONYMS:
        return _SYNONYMS[lowered]
    parsed = parametric_key(key)
    if parsed is not None:
        return set_label(*parsed)
    return next((k for k in IGNORED_KEYS if k.lower() == lowered), None)


def normalize_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Map keys to their canonical DIRAC spelling; keep unknown keys (custom attributes)
    as written but refuse likely typos of known keys with a suggestion."""
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        canonical = _canonical(key)
        if canonical is None:
            typo = likely_typo(key)
            if typo is not None:
                raise InvalidInput(
                    f"unknown job attribute '{key}' (did you mean '{typo}'?); a custom "
                    "attribute must not be this close to a known attribute name",
                    attribute=key,
                )
            canonical = key
        if canonical.lower() in seen:
            first = seen[canonical.lower()]
            also = "" if first == key else f" (as '{first}' and '{key}')"
            raise InvalidInput(
                f"job attribute '{canonical}' given twice{also}", attribute=canonical
            )
        seen[canonical.lower()] = key
        out[canonical] = value
    return out


def _validate(attrs: Mapping[str, Any], limits: SubmissionLimits, where: str) -> JobDescription:
    body: dict[str, Any] = {}
    custom = dict(attrs.get("custom_attributes") or {})
    for key, value in attrs.items():
        if key in IGNORED_KEYS or key == "custom_attributes":
            continue
        if key in _FIELD_KEYS:
            body[key] = value
        else:
            custom[key] = value
    if custom:
        body["custom_attributes"] = custom
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
    check_values(desc, where)
    return desc


# Site and storage element names: what DIRAC's configuration allows (LCG.CERN.cern, CTAO-DISK).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
# Control characters a job's text may hold: none but the tab (NUL would cut the payload's
# command line, others would reach the shell and the logs).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _strings(value: Any, field: str) -> Any:
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield field, str(key)
            yield from _strings(item, field)


def check_values(desc: JobDescription, where: str = "") -> None:
    """What the worker node cannot run is refused at submission, naming the attribute: a
    control character in any text, an invalid LFN (OutputPath, InputData, InputSandbox
    ``LFN:``, OutputData), an invalid site or storage element name."""
    fields = JobDescription.model_fields
    for name, value in desc:
        label = fields[name].alias or name if name in fields else name
        for field, text in _strings(value, label):
            match = _CONTROL.search(text)
            if match:
                raise InvalidInput(
                    f"{where}job attribute '{field}': control character "
                    f"{match.group()!r} is not allowed",
                    attribute=field,
                )

    def lfn(field: str, text: str) -> None:
        try:
            check_lfn(text)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{where}job attribute '{field}': {exc.message}", attribute=field
            ) from None

    if desc.output_path:
        lfn("OutputPath", desc.output_path)
    for item in desc.input_data:
        lfn("InputData", item)
    for item in desc.input_sandbox:
        if item.upper().startswith("LFN:"):
            lfn("InputSandbox", item)
    for item in desc.output_data:
        if item.upper().startswith("LFN:"):
            lfn("OutputData", item)
        elif desc.output_path:
            lfn("OutputData", f"{desc.output_path.rstrip('/')}/{item}")
    for field, names in (
        ("OutputSE", desc.output_se),
        ("Site", desc.sites),
        ("BannedSites", desc.banned_sites),
        ("GridCE", desc.grid_ce),
    ):
        for item in names:
            if not _NAME.fullmatch(item):
                raise InvalidInput(
                    f"{where}job attribute '{field}': {item[:80]!r} is not a valid name "
                    "(letters, digits, '_', '.', '-'; at most 128 characters)",
                    attribute=field,
                )


def expand(raw: Mapping[str, Any], limits: SubmissionLimits) -> list[JobDescription]:
    """Validate one description; a parametric one gives one JobDescription per job.

    Unlike DIRAC, the jobs do not get ``Parameter[.X]``/``ParameterNumber`` attributes: as
    job parameters they would double the rows written by a large parametric submission,
    and the values are in the expanded attributes already."""
    attrs = normalize_keys(raw)
    sets = parameter_sets(attrs, limits.max_parametric_jobs)
    body = {k: v for k, v in attrs.items() if parametric_key(k) is None}
    if sets is None:
        plain = Substitution(None, 0)  # refuses %(X)s: there is no set X
        return [_validate({k: plain.apply(v, k) for k, v in body.items()}, limits, "")]
    out = []
    for index in range(sets.count):
        sub = Substitution(sets, index)
        job = {k: sub.apply(v, k) for k, v in body.items()}
        out.append(_validate(job, limits, f"parametric job {index}: "))
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


def fill_job_id(text: str, job_id: int | str) -> str:
    """The rule for ``%j`` in one text: every occurrence becomes the job ID."""
    return text.replace("%j", str(job_id))


def _replace_job_id(value: Any, job_id: str) -> Any:
    if isinstance(value, str):
        return fill_job_id(value, job_id)
    if isinstance(value, list):
        return [_replace_job_id(v, job_id) for v in value]
    if isinstance(value, dict):
        return {k: _replace_job_id(v, job_id) for k, v in value.items()}
    return value


def substitute_job_id(desc: JobDescription, job_id: int) -> JobDescription:
    """The description with ``%j`` replaced by the job ID in every string value, at any
    depth (lists, Environment, OutputMetadata and custom attribute values; never in names,
    except the LFNs that key OutputFileMetadata).
    The one rule for ``%j``: the matcher and the submission's job parameters use it."""
    data = _replace_job_id(desc.model_dump(), str(job_id))
    # OutputFileMetadata's keys are OutputData LFNs, which hold %j as the LFNs do.
    data["output_file_metadata"] = {
        fill_job_id(lfn, str(job_id)): meta for lfn, meta in data["output_file_metadata"].items()
    }
    return JobDescription.model_validate(data)
