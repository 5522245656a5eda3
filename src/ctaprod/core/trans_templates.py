"""Placeholders of transformation templates, output LFN rules, and the rendering of a task.

Syntax: ``{{name}}``, optionally ``{{name // D}}`` (integer division, e.g. a directory per
thousand runs) and ``{{name : W}}`` (zero-padded to W digits), both on integers: the CTA
layout's ``NNNxxx`` directory is ``{{run_number // 1000 : 3}}xxx``. Spaces inside the braces
are optional. Double braces collide with nothing a job already carries: DIRAC's ``%j``,
``%s``, ``%n``, ``%(X)s``, its workflow ``@{X}``, the shell's ``$X`` and ``${X}``, and JDL's
``{a, b}`` lists all stay as written. Any other ``{{`` in a template is an error.

Placeholders (``PLACEHOLDERS``) and where they may appear (job template J, output LFN
template L, output metadata M):

========================= ======= =====================================================
``transformation_id``     J L M   the transformation's ID
``transformation``        J L M   its name
``task_id``               J L M   the task's ID (unique: no two tasks share it)
``run_number``            J L M   types with run numbers (MCSimulation): run_number_start
                                  + n - 1 for the n-th task the transformation made
``input_lfns``            J       the task's input LFNs (a whole value or list item: the
                                  list; inside a text: separated by spaces)
``input_lfn``             J       the first input LFN
``input_name``            J L     the input file's name (L: one output per input file)
``input_stem``            J L     the input file's name without its last extension
``output_lfns``           J       the task's output LFNs (as ``input_lfns``)
``output_lfn``            J       the first output LFN
``output_name``           J       the first output LFN's file name
========================= ======= =====================================================

An output LFN template must stay under its base (:func:`check_output_template`) and must not
collide between tasks: see :func:`check_output_template` for the rule and why it suffices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctaprod.core.errors import InvalidInput
from ctaprod.core.lfn import check_lfn, is_under

__all__ = [
    "INPUT_PLACEHOLDERS",
    "IN_JOB",
    "IN_LFN",
    "IN_METADATA",
    "OUTPUT_PLACEHOLDERS",
    "PLACEHOLDERS",
    "Placeholder",
    "TaskValues",
    "check_output_template",
    "placeholders_in",
    "render_lfns",
    "substitute",
]

_TOKEN = re.compile(r"\{\{\s*([a-z_]+)\s*(?://\s*([0-9]+)\s*)?(?::\s*([0-9]+)\s*)?\}\}")
_OPEN = "{{"
MAX_WIDTH = 20

PLACEHOLDERS = (
    "transformation_id",
    "transformation",
    "task_id",
    "run_number",
    "input_lfns",
    "input_lfn",
    "input_name",
    "input_stem",
    "output_lfns",
    "output_lfn",
    "output_name",
)
IN_JOB = frozenset(PLACEHOLDERS)
IN_LFN = frozenset(
    {"transformation_id", "transformation", "task_id", "run_number", "input_name", "input_stem"}
)
IN_METADATA = frozenset({"transformation_id", "transformation", "task_id", "run_number"})
# Different for every task of a transformation, and made of digits only.
PER_TASK = frozenset({"task_id", "run_number"})
# The same for every task of a transformation.
PER_TRANSFORMATION = frozenset({"transformation_id", "transformation"})
# Different for every input file of a task (one output per input file).
PER_INPUT = frozenset({"input_name", "input_stem"})
INTEGERS = frozenset({"transformation_id", "task_id", "run_number"})
_LISTS = frozenset({"input_lfns", "output_lfns"})
INPUT_PLACEHOLDERS = frozenset({"input_lfns", "input_lfn", "input_name", "input_stem"})
OUTPUT_PLACEHOLDERS = frozenset({"output_lfns", "output_lfn", "output_name"})


@dataclass(frozen=True)
class Placeholder:
    """One ``{{...}}`` of a text: its span, name, divisor and zero-padded width."""

    start: int
    end: int
    name: str
    divisor: int | None
    width: int | None


def placeholders_in(text: str, allowed: frozenset[str], where: str) -> list[Placeholder]:
    """The placeholders of ``text``, or ``InvalidInput`` naming ``where`` for an unknown or
    malformed one, a name not allowed there, or a divisor/width on a non-integer."""
    found = []
    for match in _TOKEN.finditer(text):
        name, div, width = match.group(1), match.group(2), match.group(3)
        if name not in PLACEHOLDERS:
            raise InvalidInput(
                f"{where}: unknown placeholder {{{{{name}}}}} (known: {', '.join(PLACEHOLDERS)})",
                key=where,
                placeholder=name,
            )
        if name not in allowed:
            raise InvalidInput(
                f"{where}: placeholder {{{{{name}}}}} cannot be used here (allowed: "
                f"{', '.join(p for p in PLACEHOLDERS if p in allowed)})",
                key=where,
                placeholder=name,
            )
        if (div or width) and name not in INTEGERS:
            raise InvalidInput(
                f"{where}: {{{{{name}}}}} is not a number: no '//' or ':' on it", key=where
            )
        if div is not None and int(div) == 0:
            raise InvalidInput(f"{where}: {{{{{name} // 0}}}} divides by zero", key=where)
        if width is not None and not 1 <= int(width) <= MAX_WIDTH:
            raise InvalidInput(f"{where}: width {width} is not in 1..{MAX_WIDTH}", key=where)
        found.append(
            Placeholder(
                match.start(),
                match.end(),
                name,
                None if div is None else int(div),
                None if width is None else int(width),
            )
        )
    rest = _TOKEN.sub("", text)
    if _OPEN in rest:
        raise InvalidInput(
            f"{where}: malformed placeholder near {rest[rest.index(_OPEN) :][:30]!r} "
            "(write {{name}}, {{name // 1000}} or {{name : 6}})",
            key=where,
        )
    return found


@dataclass(frozen=True)
class TaskValues:
    """The values of the placeholders for one task (and one input file, for LFNs)."""

    transformation_id: int
    transformation: str
    task_id: int
    run_number: int | None = None
    input_lfns: tuple[str, ...] = ()
    output_lfns: tuple[str, ...] = ()

    def value(self, name: str) -> Any:
        if name == "run_number" and self.run_number is None:
            raise InvalidInput(
                "{{run_number}} is only defined for transformation types with run numbers",
                placeholder=name,
            )
        if name in INPUT_PLACEHOLDERS and not self.input_lfns:
            raise InvalidInput(f"{{{{{name}}}}}: the task has no input files", placeholder=name)
        if name.startswith("output_") and not self.output_lfns:
            raise InvalidInput(
                f"{{{{{name}}}}}: the transformation has no output LFN template",
                placeholder=name,
            )
        first_in = self.input_lfns[0] if self.input_lfns else ""
        first_out = self.output_lfns[0] if self.output_lfns else ""
        return {
            "transformation_id": self.transformation_id,
            "transformation": self.transformation,
            "task_id": self.task_id,
            "run_number": self.run_number,
            "input_lfns": list(self.input_lfns),
            "input_lfn": first_in,
            "input_name": _name(first_in),
            "input_stem": _stem(_name(first_in)),
            "output_lfns": list(self.output_lfns),
            "output_lfn": first_out,
            "output_name": _name(first_out),
        }[name]

    def for_input(self, lfn: str) -> TaskValues:
        """These values, for the output of one input file of the task."""
        return TaskValues(
            self.transformation_id,
            self.transformation,
            self.task_id,
            self.run_number,
            (lfn,),
            self.output_lfns,
        )


def _name(lfn: str) -> str:
    return lfn.rsplit("/", 1)[-1]


def _stem(name: str) -> str:
    head, dot, _ = name.rpartition(".")
    return head if dot and head else name


def _text(holder: Placeholder, value: Any) -> str:
    if isinstance(value, list):
        return " ".join(value)
    if holder.name in INTEGERS:
        number = int(value) // (holder.divisor or 1)
        return f"{number:0{holder.width}d}" if holder.width else str(number)
    return str(value)


def _render_text(text: str, allowed: frozenset[str], values: TaskValues, where: str) -> Any:
    holders = placeholders_in(text, allowed, where)
    if not holders:
        return text
    only = holders[0]
    if len(holders) == 1 and only.start == 0 and only.end == len(text):
        value = values.value(only.name)
        # A whole value keeps its type: a list stays a list, a number a number.
        if only.divisor is None and only.width is None:
            return value
    out, pos = [], 0
    for holder in holders:
        out.append(text[pos : holder.start])
        out.append(_text(holder, values.value(holder.name)))
        pos = holder.end
    out.append(text[pos:])
    return "".join(out)


def substitute(value: Any, allowed: frozenset[str], values: TaskValues, where: str) -> Any:
    """``value`` with its placeholders replaced, at any depth (list items that render to a
    list are spliced in; mapping keys are never rendered)."""
    if isinstance(value, str):
        return _render_text(value, allowed, values, where)
    if isinstance(value, list):
        out: list[Any] = []
        for index, item in enumerate(value):
            rendered = substitute(item, allowed, values, f"{where}[{index}]")
            if isinstance(item, str) and isinstance(rendered, list):
                out.extend(rendered)
            else:
                out.append(rendered)
        return out
    if isinstance(value, Mapping):
        return {k: substitute(v, allowed, values, f"{where}.{k}") for k, v in value.items()}
    return value


def check_output_template(
    template: str,
    *,
    bases: Sequence[str],
    run_numbers: bool,
    has_input: bool,
    where: str = "output_lfn_template",
) -> bool:
    """Check one output LFN template; return whether it makes one output per input file.

    **Base.** The text before the first placeholder, up to its last ``/``, is the template's
    base directory: it must be a valid LFN under one of ``bases`` (the transformation's and
    the owner's areas). No placeholder value can climb out of it: none contains ``/`` (names
    of files and transformations, numbers), the literal parts may not contain ``.`` or ``..``
    components nor ``//``, and an LFN component is never ``..``.

    **No collision between tasks.** The template must hold a per-task placeholder
    (``task_id``, ``run_number``, undivided) whose digits can be read back from any LFN it
    renders (:func:`_readable`): then two tasks give different LFNs, whatever the other
    placeholders render. Or it holds ``{{input_name}}`` (one output per input file), unique
    as long as the transformation's input files have distinct names (a task that would
    write one LFN twice is refused when rendered); ``{{input_stem}}`` alone is not enough
    (``a.x`` and ``a.y`` share it). Other transformations are not considered: put
    ``{{transformation_id}}`` in the template to stay apart from them.
    """
    if not isinstance(template, str) or not template:
        raise InvalidInput(f"{where}: an LFN template is a non-empty text", key=where)
    allowed = IN_LFN - ({"run_number"} if not run_numbers else set())
    allowed -= PER_INPUT if not has_input else set()
    holders = placeholders_in(template, allowed, where)
    head = template[: holders[0].start] if holders else template
    base = head[: head.rfind("/")] if "/" in head else ""
    if not base.startswith("/"):
        raise InvalidInput(
            f"{where}: {template!r} must start with an absolute base directory", key=where
        )
    literal = _TOKEN.sub("x", template)  # a placeholder renders as a plain name part
    parts = literal.split("/")
    if "" in parts[1:] or "." in parts or ".." in parts:
        raise InvalidInput(f"{where}: {template!r} has an empty, '.' or '..' component", key=where)
    try:
        check_lfn(literal)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", key=where) from None
    if not any(is_under(base, b, or_equal=True) for b in bases):
        raise InvalidInput(
            f"{where}: {template!r} is not under the allowed areas ({', '.join(bases)})",
            key=where,
        )
    names = {h.name for h in holders}
    if "input_name" in names or any(_readable(template, holders, i) for i in range(len(holders))):
        return bool(names & PER_INPUT)
    raise InvalidInput(
        f"{where}: {template!r} would give the same LFN to several tasks: put {{{{task_id}}}}"
        + (" or {{run_number}}" if run_numbers else "")
        + (" or {{input_name}}" if has_input else "")
        + " in it, next to a literal non-digit character (e.g. '_{{task_id}}.h5')",
        key=where,
    )


def _readable(template: str, holders: Sequence[Placeholder], index: int) -> bool:
    """Whether two tasks of one transformation always render different LFNs because of
    ``holders[index]``: an undivided per-task number (zero-padding keeps numbers distinct)
    whose digits can be read back. The transformation's ID and name are the same for all
    its tasks, so they count as literal text; the other placeholders vary. Readable when no
    other placeholder varies (prefix and suffix are then fixed), or when none varies after
    it and a literal non-digit precedes it (strip the fixed suffix, take the trailing
    digits), or none varies before it and a literal non-digit (or the end) follows it."""
    holder = holders[index]
    if holder.name not in PER_TASK or holder.divisor is not None:
        return False
    varying_before = any(h.name not in PER_TRANSFORMATION for h in holders[:index])
    varying_after = any(h.name not in PER_TRANSFORMATION for h in holders[index + 1 :])
    if not varying_before and not varying_after:
        return True
    prev_end = holders[index - 1].end if index else -1
    next_start = holders[index + 1].start if index + 1 < len(holders) else -1
    left = (
        holder.start > 0 and prev_end != holder.start and not template[holder.start - 1].isdigit()
    )
    right = holder.end == len(template) or (
        next_start != holder.end and not template[holder.end].isdigit()
    )
    return (not varying_after and left) or (not varying_before and right)


def render_lfns(
    templates: Sequence[str], values: TaskValues, per_input: Sequence[bool]
) -> list[str]:
    """The output LFNs of a task: a per-input template once per input file (in input
    order), the others once; each checked as an LFN."""
    out: list[str] = []
    for template, each in zip(templates, per_input, strict=True):
        rounds = [values.for_input(lfn) for lfn in values.input_lfns] if each else [values]
        for vals in rounds:
            text = _render_text(template, IN_LFN, vals, "output_lfn_template")
            out.append(check_lfn(str(text)))
    return out
