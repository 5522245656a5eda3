"""Parametric jobs as DIRAC writes them: parameter sets, their values and the placeholders.

A description is parametric when it has a ``Parameters`` attribute, unnamed or named:

- ``Parameters = {a, b, c}`` or ``Parameters.X = {a, b, c}``: a set of listed values (a
  value may itself be a list: one InputData list per job);
- ``Parameters = 3`` (or ``Parameters.X = 3``) with ``ParameterStart[.X]`` (default 1),
  ``ParameterStep[.X]`` (default 0) and ``ParameterFactor[.X]`` (default 1): the values
  start, start*factor + step, ... computed as DIRAC computes them (Python numbers: an int
  stays an int, a float start, step or factor makes them all floats, written by ``str``, so
  ``1.0`` and, like DIRAC, ``1.2000000000000002``). A named set without its own count takes
  the job count.

All sets have the same length N and expand in parallel: job n takes value n of every set.
In every string value, ``%n`` becomes n zero-padded to the width of N-1, ``%(X)s`` the
value of set X and ``%s`` the value of the unnamed set (left as written when there is none,
as DIRAC does: ``date +%s``). A placeholder that is a whole value and whose value is a list
becomes that list (spliced into a list); inside a longer string a list is written as JDL.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ctaprod.core.errors import InvalidInput, TooLarge
from ctaprod.core.jdl import format_value

PARAMETRIC_KEYS = ("Parameters", "ParameterStart", "ParameterStep", "ParameterFactor")
_BY_LOWER = {k.lower(): k for k in PARAMETRIC_KEYS}
_SET_NAME = re.compile(r"[A-Za-z0-9_]+")
_PLACEHOLDER = re.compile(r"%\(([^)]*)\)s|%s|%n")
# A generated value longer than this is a runaway ParameterFactor, not a parameter: values
# stay within 64-bit integers (and floats below 10**19), as every consumer can hold them.
MAX_DIGITS = 19
_LIMIT = 10**MAX_DIGITS
_DEFAULTS = {"ParameterStart": 1, "ParameterStep": 0, "ParameterFactor": 1}


def parametric_key(key: str) -> tuple[str, str] | None:
    """``(base, set name)`` of a parametric attribute (name "" for the unnamed set), in
    DIRAC's spelling of the base; None for any other attribute."""
    base, dot, name = key.partition(".")
    canonical = _BY_LOWER.get(base.lower())
    if canonical is None:
        return None
    if dot and not _SET_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid parameter set name in '{key}': use letters, digits and '_'", attribute=key
        )
    return canonical, name


def set_label(base: str, name: str) -> str:
    return f"{base}.{name}" if name else base


@dataclass(frozen=True)
class ParameterSets:
    """The values of every set (name "" is the unnamed one), all of length ``count``."""

    count: int
    values: dict[str, list[Any]]


def parameter_sets(attrs: Mapping[str, Any], max_jobs: int) -> ParameterSets | None:
    """The parameter sets of a description (keys already in canonical spelling), or None
    when it is not parametric. Raises InvalidInput/TooLarge naming the faulty attribute."""
    spec: dict[str, dict[str, Any]] = {}
    for key, value in attrs.items():
        parsed = parametric_key(key)
        if parsed is not None:
            spec.setdefault(parsed[1], {})[parsed[0]] = value
    if not spec:
        return None
    if not any("Parameters" in s for s in spec.values()):
        first = next(set_label(b, n) for n, s in spec.items() for b in s)
        raise InvalidInput(f"'{first}' needs 'Parameters'", attribute=first)
    counts = {
        n: _count(set_label("Parameters", n), s["Parameters"])
        for n, s in spec.items()
        if "Parameters" in s
    }
    lengths = set(counts.values())
    if len(lengths) > 1:
        shown = ", ".join(f"{set_label('Parameters', n)} has {c}" for n, c in counts.items())
        raise InvalidInput(f"parameter sets of different lengths: {shown}", attribute="Parameters")
    count = lengths.pop()
    if count > max_jobs:
        raise TooLarge(
            f"{count} parametric jobs requested, the limit is {max_jobs}", attribute="Parameters"
        )
    values = {}
    for name, s in spec.items():
        listed = s.get("Parameters")
        if isinstance(listed, list):
            extra = [b for b in s if b != "Parameters"]
            if extra:
                label = set_label(extra[0], name)
                raise InvalidInput(
                    f"'{label}' cannot be used with the listed values of "
                    f"'{set_label('Parameters', name)}'",
                    attribute=label,
                )
            values[name] = list(listed)
        else:
            values[name] = _sequence(name, s, count)
    return ParameterSets(count, values)


def _count(label: str, value: Any) -> int:
    if isinstance(value, list):
        count = len(value)
        if not count:
            raise InvalidInput(f"'{label}' is an empty list", attribute=label)
        return count
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,19}\s*", value):
        value = int(value)  # DIRAC reads "5" as 5
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"'{label}' must be a number or a list, not {value!r}", attribute=label)
    if value < 1:
        raise InvalidInput(f"'{label}' must be at least 1", attribute=label)
    return value


def _number(label: str, value: Any) -> int | float:
    if isinstance(value, str):  # DIRAC strips the quotes of a quoted number
        text = value.strip()
        if len(text) > 40:
            raise InvalidInput(
                f"'{label}' must be a number of at most 40 characters", attribute=label
            )
        if re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        else:
            with contextlib.suppress(ValueError):
                value = float(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = value if not isinstance(value, str) else value[:40]
        raise InvalidInput(f"'{label}' must be a number (finite), not {shown!r}", attribute=label)
    if abs(value) >= _LIMIT:
        raise InvalidInput(
            f"'{label}' is too large (more than {MAX_DIGITS} digits)", attribute=label
        )
    return value


def _sequence(name: str, spec: Mapping[str, Any], count: int) -> list[Any]:
    start, step, factor = (
        _number(set_label(b, name), spec.get(b, _DEFAULTS[b]))
        for b in ("ParameterStart", "ParameterStep", "ParameterFactor")
    )
    # DIRAC's typing: a float step or factor makes the first value (and so all) a float.
    value = start * type(factor)(1) + type(step)(0)
    out = [value]
    for index in range(1, count):
        value = value * factor + step
        too_big = (
            not math.isfinite(value) or abs(value) >= _LIMIT
            if isinstance(value, float)
            else abs(value) >= _LIMIT
        )
        if too_big:
            label = set_label("ParameterFactor", name)
            raise InvalidInput(
                f"'{label}' makes value {index} of the parameter set "
                f"'{set_label('Parameters', name)}' too large (more than {MAX_DIGITS} digits)",
                attribute=label,
            )
        out.append(value)
    return out


def value_text(value: Any) -> str:
    """A parameter value as substituted into a string (DIRAC writes numbers with ``str``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list):
        return format_value(value)
    raise InvalidInput(f"a parameter value cannot be {type(value).__name__}: {value!r}")


class Substitution:
    """The placeholders of job ``index`` of a parametric description (or of a plain one:
    ``sets`` None, where any ``%(X)s`` is an error)."""

    def __init__(self, sets: ParameterSets | None, index: int) -> None:
        self.sets = sets
        self.index = index
        width = len(str(sets.count - 1)) if sets else 1
        self.number = str(index).zfill(width)

    def _value(self, name: str, attribute: str) -> Any:
        if self.sets is None or name not in self.sets.values:
            known = sorted(n for n in (self.sets.values if self.sets else ()) if n)
            close = [n for n in known if n.lower() == name.lower()]
            hint = (
                f"did you mean '%({close[0]})s'?"
                if close
                else f"the named sets are: {', '.join(known)}"
                if known
                else "the description defines no named parameter set (Parameters.<name>)"
            )
            raise InvalidInput(
                f"'{attribute}' uses the placeholder '%({name})s' but there is no parameter "
                f"set '{name}' ({hint})",
                attribute=attribute,
                placeholder=name,
            )
        return self.sets.values[name][self.index]

    def _whole(self, text: str, attribute: str) -> Any | None:
        """The value of a string that is exactly one set placeholder, else None."""
        match = _PLACEHOLDER.fullmatch(text)
        if match is None or text == "%n":
            return None
        if text == "%s":
            if self.sets is None or "" not in self.sets.values:
                return None
            return self.sets.values[""][self.index]
        return self._value(match.group(1), attribute)

    def text(self, text: str, attribute: str) -> str:
        def one(match: re.Match[str]) -> str:
            token = match.group(0)
            if token == "%n":
                return self.number if self.sets else token
            if token == "%s":
                if self.sets is None or "" not in self.sets.values:
                    return token  # no unnamed set: DIRAC leaves %s alone
                return value_text(self.sets.values[""][self.index])
            return value_text(self._value(match.group(1), attribute))

        return _PLACEHOLDER.sub(one, text)

    def apply(self, value: Any, attribute: str) -> Any:
        """``value`` with its placeholders replaced; a whole-value list placeholder gives
        the list (spliced when it is an item of a list)."""
        if isinstance(value, str):
            if "%" not in value:
                return value
            whole = self._whole(value, attribute)
            if isinstance(whole, list):
                return list(whole)
            return self.text(value, attribute)
        if isinstance(value, list):
            out: list[Any] = []
            for item in value:
                whole = self._whole(item, attribute) if isinstance(item, str) else None
                if isinstance(whole, list):
                    out.extend(whole)  # DIRAC drops the braces of a list in a list
                else:
                    out.append(self.apply(item, attribute))
            return out
        if isinstance(value, dict):  # YAML/JSON mappings (Environment): their values
            return {k: self.apply(v, attribute) for k, v in value.items()}
        return value
