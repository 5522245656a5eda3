"""Metadata queries: typed fields, conditions, three input forms, checking and evaluation.

Pure standard library, no I/O. A ``MetaQuery`` is the AND of ``Condition(field, op, value)``,
kept sorted by field then operator (equal queries compare equal). A field may carry several
conditions (a range: ``runNumber >= 10`` and ``< 20``), each operator once. Operators:
``= != < <= > >= in nin``; ``==`` reads as ``=``, ``not in`` as ``nin``; ``=``/``!=`` with a
list become ``in``/``nin`` (as in DIRAC). Ordering works on every type: numbers numerically,
datetimes in time, strings by code point (``"Prod10" < "Prod6"``).

Input forms (``parse`` takes any; ``validate`` parses, then checks against a ``MetaSchema``):

1. A mapping, as in CTADIRAC dataset files: ``{'particle': 'gamma', 'thetaP': {'=': 20},
   'runNumber': {'>=': 10, '<': 20}, 'site': ['LaPalma', 'Paranal']}``: a plain value means
   ``=``, a plain list ``in``, a dict maps operators to values.
2. The text of such a file: a Python dict literal (``ast.literal_eval``, never evaluated) or
   JSON; recognised by its leading ``{``.
3. The compact form of the command line, ``particle=gamma thetaP>=20 site in (LaPalma,Paranal)``::

       query     := [condition {["and"] condition}]       (separated by spaces)
       condition := FIELD ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") values
                  | FIELD ("in" | "nin" | "not in") values
       values    := "(" [value {"," value} [","]] ")" | value {"," value}
       value     := '"' text '"' | "'" text "'" | bare

   Spaces are optional around operators, commas and parentheses; words are case-insensitive.
   In quotes, a backslash takes the next character literally. A bare value has none of
   ``space ( ) , " ' = ! < >``; it reads as an int (``-?(0|[1-9][0-9]*)``), a float (``1.5``,
   ``-2e3``) or else a string; a quoted value is a string. ``site=LaPalma,Paranal`` means
   ``site in (LaPalma,Paranal)``. Syntax errors give the 1-based position.

Types (``FieldType``): int (64-bit), float (finite), string (<= 255 characters, no NUL),
datetime (ISO 8601, naive means UTC; kept aware in UTC). ``validate`` coerces: an int field
takes ``20``, ``20.0``, ``"20"``; a float field ints and numeric strings; a string field
strings and ints (``2020`` -> ``"2020"``) but not floats (quote them).

``matches`` follows DIRAC: a field missing from the metadata (or None) fails every condition
on it, ``!=`` and ``nin`` included; values of incomparable types do not match.
"""

from __future__ import annotations

import ast
import difflib
import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TypeAlias

from ctaprod.core.errors import InvalidInput

__all__ = [
    "Condition", "FieldType", "MetaQuery", "MetaSchema", "Op", "check_field_name", "coerce",
    "effective_metadata", "equality_keys", "matches", "parse", "parse_mapping", "parse_text",
    "to_dict", "to_text", "validate",
]  # fmt: skip

Scalar: TypeAlias = int | float | str | datetime
Value: TypeAlias = Scalar | tuple[Scalar, ...]

MAX_FIELD_NAME = 64
MAX_STRING_LENGTH = 255
MAX_TEXT_LENGTH = 65536
INT_RANGE = (-(2**63), 2**63 - 1)


class FieldType(StrEnum):
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    DATETIME = "datetime"

    @classmethod
    def parse(cls, name: str) -> FieldType:
        """``int``, ``float``, ``string`` or ``datetime``, in any letter case."""
        try:
            return cls(str(name).strip().lower())
        except ValueError:
            valid = "int, float, string or datetime"
            raise InvalidInput(f"unknown metadata type {name!r}; use {valid}") from None


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    NIN = "nin"


_OPS = {op.value: op for op in Op} | {"==": Op.EQ, "not in": Op.NIN}
_OP_ORDER = {op: index for index, op in enumerate(Op)}
_SINGLE_OPS = (Op.LT, Op.LE, Op.GT, Op.GE)
_COMPARE: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: operator.eq, Op.NE: operator.ne, Op.LT: operator.lt, Op.LE: operator.le,
    Op.GT: operator.gt, Op.GE: operator.ge,
    Op.IN: lambda a, b: a in b, Op.NIN: lambda a, b: a not in b,
}  # fmt: skip
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_TOKEN = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_TOKEN = re.compile(
    r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+"
)
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _op(text: object, name: str) -> Op:
    if isinstance(text, str) and (op := _OPS.get(" ".join(text.split()).lower())):
        return op
    valid = " ".join(op.value for op in Op)
    raise InvalidInput(
        f"unknown operator {text!r} for field {name!r}; valid operators: {valid}",
        field=name, operator=text,
    )  # fmt: skip


def check_field_name(name: object) -> str:
    """A metadata field name: letters, digits and ``_``, not starting with a digit, <= 64."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid metadata field name {name!r}: use letters, digits and '_', "
            "not starting with a digit", field=name,
        )  # fmt: skip
    if len(name) > MAX_FIELD_NAME:
        raise InvalidInput(f"metadata field name {name!r} is longer than {MAX_FIELD_NAME}")
    return name


def _scalar(name: str, value: object) -> Scalar:
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return value
    raise InvalidInput(
        f"field {name!r}: value {value!r} is not a number, a string or a date",
        field=name, value=value,
    )  # fmt: skip


@dataclass(frozen=True)
class Condition:
    """One test on one field; lists become tuples, ``=``/``!=`` with a list ``in``/``nin``."""

    field: str
    op: Op
    value: Value

    def __post_init__(self) -> None:
        check_field_name(self.field)
        op, value = _op(self.op, self.field), self.value
        if isinstance(value, list | tuple):
            if op in _SINGLE_OPS:
                raise InvalidInput(f"operator '{op}' on field {self.field!r} takes one value")
            op = {Op.EQ: Op.IN, Op.NE: Op.NIN}.get(op, op)
            value = tuple(dict.fromkeys(_scalar(self.field, item) for item in value))
        elif op in (Op.IN, Op.NIN):
            value = (_scalar(self.field, value),)
        else:
            value = _scalar(self.field, value)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "value", value)


@dataclass(frozen=True)
class MetaQuery:
    """The AND of its conditions (none: everything matches)."""

    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        ordered = sorted(set(self.conditions), key=lambda c: (c.field, _OP_ORDER[c.op]))
        for first, second in itertools.pairwise(ordered):
            if (first.field, first.op) == (second.field, second.op):
                hint = {Op.EQ: ": use 'in' with a list", Op.NE: ": use 'nin' with a list"}
                raise InvalidInput(
                    f"field {first.field!r} has two '{first.op}' conditions"
                    + hint.get(first.op, ": keep one"), field=first.field,
                )  # fmt: skip
        object.__setattr__(self, "conditions", tuple(ordered))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.field for c in self.conditions))

    def __str__(self) -> str:
        return to_text(self)


class MetaSchema:
    """The declared metadata fields: name -> ``FieldType`` (type names as ``FieldType.parse``)."""

    def __init__(self, fields: Mapping[str, FieldType | str]) -> None:
        self.fields = {check_field_name(n): FieldType.parse(t) for n, t in fields.items()}

    def field_type(self, name: str) -> FieldType:
        """The type of ``name``, or ``InvalidInput`` naming the close matches."""
        if name in self.fields:
            return self.fields[name]
        lower = {n.lower(): n for n in self.fields}
        close = [lower[n] for n in difflib.get_close_matches(name.lower(), lower, n=3)]
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "no similar field"
        raise InvalidInput(
            f"metadata field {name!r} is not declared; {hint}", field=name, close_matches=close
        )


def _coerced(ftype: FieldType, value: Scalar) -> Scalar:
    if ftype is FieldType.DATETIME:
        if isinstance(value, str):
            value = _scalar("", datetime.fromisoformat(value.strip()))
        if isinstance(value, datetime):
            return value
    elif ftype is FieldType.STRING:
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH or "\x00" in value:
                raise ValueError(f"longer than {MAX_STRING_LENGTH} characters or has a NUL")
            return value
    elif not isinstance(value, datetime):
        number = _number(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError("not finite")
        if ftype is FieldType.FLOAT:
            return float(number)
        if isinstance(number, float) and not number.is_integer():
            raise ValueError("has a fractional part")
        if not INT_RANGE[0] <= int(number) <= INT_RANGE[1]:
            raise ValueError("out of the 64-bit range")
        return int(number)
    raise ValueError("")


def _number(text: str) -> int | float:
    if not _NUMBER_TEXT.fullmatch(text):
        raise ValueError("")
    return int(text) if _INT_TEXT.fullmatch(text) else float(text)


def coerce(name: str, ftype: FieldType, value: object) -> Scalar:
    """``value`` as a ``ftype`` value of field ``name``, or ``InvalidInput`` saying why not."""
    try:
        return _coerced(ftype, _scalar(name, value))
    except (ValueError, OverflowError) as exc:
        why = f" ({exc})" if str(exc) and isinstance(exc, ValueError) else ""
        raise InvalidInput(
            f"field {name!r} is of type {ftype}: value {value!r} is not a valid {ftype}{why}",
            field=name, value=value, type=ftype.value,
        ) from None  # fmt: skip


def parse(source: MetaQuery | Mapping[str, Any] | str) -> MetaQuery:
    """A query from any of its forms (no type checks: see ``validate``)."""
    if isinstance(source, MetaQuery):
        return source
    if isinstance(source, Mapping):
        return parse_mapping(source)
    if isinstance(source, str):
        return parse_text(source)
    raise InvalidInput(f"a metadata query is a mapping or a text, not {type(source).__name__}")


def parse_mapping(data: Mapping[str, Any]) -> MetaQuery:
    if not isinstance(data, Mapping):
        raise InvalidInput("a metadata query must be a mapping of field -> condition")
    conditions = []
    for name, spec in data.items():
        check_field_name(name)
        if isinstance(spec, Mapping):
            if not spec:
                raise InvalidInput(f"field {name!r}: empty operator mapping", field=name)
            conditions += [Condition(name, _op(op, name), value) for op, value in spec.items()]
        else:
            conditions.append(Condition(name, Op.IN if isinstance(spec, list) else Op.EQ, spec))
    return MetaQuery(tuple(conditions))


def parse_text(text: str) -> MetaQuery:
    """A dict literal or JSON (when it starts with ``{``), else the compact form."""
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"metadata query longer than {MAX_TEXT_LENGTH} characters")
    if not text.strip().startswith("{"):
        return _TextParser(text).parse()
    try:
        data = json.loads(text)
    except ValueError:  # not JSON: a Python literal
        data = _literal(text.strip())
    except RecursionError:
        raise InvalidInput("metadata query nested too deeply") from None
    return parse_mapping(data)


def _literal(text: str) -> Any:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        where = f" at line {exc.lineno}, column {exc.offset}" if exc.lineno else ""
        raise InvalidInput(f"query syntax error{where}: {exc.msg}", text=text) from None
    except (ValueError, RecursionError, MemoryError):  # NUL bytes, deep nesting
        raise InvalidInput("metadata query is not a valid literal") from None
    try:
        return ast.literal_eval(tree)
    except (ValueError, TypeError, RecursionError):
        ok = ast.Expression | ast.Constant | ast.Dict | ast.List | ast.Tuple | ast.Set | ast.Load
        ok |= ast.UnaryOp | ast.USub | ast.UAdd
        bad = next((n for n in ast.walk(tree) if not isinstance(n, ok)), tree)
        where = f"line {getattr(bad, 'lineno', 1)}, column {getattr(bad, 'col_offset', 0) + 1}"
        raise InvalidInput(
            f"query syntax error at {where}: only literal values are allowed", text=text
        ) from None


_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>==|!=|<=|>=|=|<|>)
    |(?P<punct>[(),])|(?P<bare>[^\s(),"'=!<>]+)|(?P<bad>.)""",
    re.VERBOSE | re.DOTALL,
)
_BARE = re.compile(r"[^\s(),\"'=!<>]+")


class _TextParser:
    """The compact form, over tokens (kind, text, position); see the module docstring."""

    def __init__(self, text: str) -> None:
        tokens = [(m.lastgroup or "", m.group(), m.start()) for m in _TOKEN.finditer(text)]
        self.tokens = [tok for tok in tokens if tok[0] != "ws"] + [("end", "", len(text))]
        self.index = 0

    def error(self, message: str, skip: int = 0) -> InvalidInput:
        kind, text, pos = self.tokens[self.index]
        found = "the end of the text" if kind == "end" else repr(text[skip:])
        if kind == "bad" and text in "\"'":
            found = "an unterminated quoted value"
        pos += skip
        return InvalidInput(
            f"query syntax error at position {pos + 1}: {message}, found {found}", position=pos + 1
        )

    def take(self, kind: str, text: str | None = None) -> str | None:
        tok_kind, tok_text, _ = self.tokens[self.index]
        if tok_kind != kind or (text is not None and tok_text.lower() != text):
            return None
        self.index += 1
        return tok_text

    def parse(self) -> MetaQuery:
        conditions: list[Condition] = []
        while self.tokens[self.index][0] != "end":
            if conditions and self.tokens[self.index + 1][0] == "bare":
                self.take("bare", "and")
            conditions.append(self.condition())
        return MetaQuery(tuple(conditions))

    def condition(self) -> Condition:
        kind, name, _ = self.tokens[self.index]
        if kind != "bare" or not (match := _NAME_RE.match(name)):
            raise self.error("expected a field name")
        if match.end() < len(name):
            raise self.error(f"expected an operator after {match.group()!r}", match.end())
        self.index += 1
        if (symbol := self.take("op")) is not None:
            op = _op(symbol, name)
        elif self.take("bare", "in"):
            op = Op.IN
        elif self.take("bare", "nin") or (self.take("bare", "not") and self.take("bare", "in")):
            op = Op.NIN
        else:
            raise self.error(f"expected an operator after {name!r} (= != < <= > >= in nin)")
        if op in _SINGLE_OPS and self.tokens[self.index][1] == "(":
            raise self.error(f"operator '{op}' takes one value, not a list")
        if self.take("punct", "("):
            items = []
            while not self.take("punct", ")"):
                items.append(self.value())
                if not self.take("punct", ",") and self.tokens[self.index][1] != ")":
                    raise self.error("expected ',' or ')'")
            return Condition(check_field_name(name), op, tuple(items))
        value = [self.value()]
        while self.tokens[self.index][:2] == ("punct", ","):
            if op in _SINGLE_OPS:
                raise self.error(f"operator '{op}' takes one value, not a list")
            self.index += 1
            value.append(self.value())
        return Condition(check_field_name(name), op, value[0] if len(value) == 1 else tuple(value))

    def value(self) -> Scalar:
        if (text := self.take("quoted")) is not None:
            return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)
        if (text := self.take("bare")) is None:
            raise self.error("expected a value (quote values with spaces or = ! < > ( ) ,)")
        if _INT_TOKEN.fullmatch(text):
            return int(text)
        return float(text) if _FLOAT_TOKEN.fullmatch(text) else text


def validate(
    query: MetaQuery | Mapping[str, Any] | str, schema: MetaSchema | Mapping[str, FieldType | str]
) -> MetaQuery:
    """Parse ``query`` and check it against ``schema``: declared fields, typed values."""
    schema = schema if isinstance(schema, MetaSchema) else MetaSchema(schema)
    checked = []
    for cond in parse(query).conditions:
        ftype = schema.field_type(cond.field)
        if isinstance(cond.value, tuple):
            if not cond.value:
                raise InvalidInput(
                    f"operator '{cond.op}' on field {cond.field!r} needs a non-empty list",
                    field=cond.field,
                )
            value: Value = tuple(coerce(cond.field, ftype, v) for v in cond.value)
        else:
            value = coerce(cond.field, ftype, cond.value)
        checked.append(Condition(cond.field, cond.op, value))
    return MetaQuery(tuple(checked))


def matches(query: MetaQuery, metadata: Mapping[str, Any]) -> bool:
    """Whether metadata (e.g. ``effective_metadata``) satisfies every condition."""
    for cond in query.conditions:
        actual = metadata.get(cond.field)
        if actual is None:
            return False
        try:
            if not _COMPARE[cond.op](_scalar(cond.field, actual), cond.value):
                return False
        except (TypeError, InvalidInput):
            return False
    return True


def effective_metadata(
    dir_chain: Sequence[Mapping[str, Any]], file_meta: Mapping[str, Any]
) -> dict[str, Any]:
    """A file's own metadata over its directories' (``dir_chain`` from ``/`` down): nearest wins."""
    merged: dict[str, Any] = {}
    for level in (*dir_chain, file_meta):
        merged.update(level)
    return merged


def equality_keys(query: MetaQuery) -> dict[str, Scalar]:
    """The ``=`` conditions as field -> value."""
    return {
        c.field: c.value
        for c in query.conditions
        if c.op is Op.EQ and not isinstance(c.value, tuple)
    }


def _plain(value: Value) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value.isoformat() if isinstance(value, datetime) else value


def to_dict(query: MetaQuery) -> dict[str, dict[str, Any]]:
    """``{field: {op: value}}``, JSON-ready (lists for in/nin, ISO text for datetimes)."""
    result: dict[str, dict[str, Any]] = {}
    for cond in query.conditions:
        result.setdefault(cond.field, {})[cond.op.value] = _plain(cond.value)
    return result


def _render(value: Scalar) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str):
        return repr(value)
    if _BARE.fullmatch(value) and not (
        _INT_TOKEN.fullmatch(value) or _FLOAT_TOKEN.fullmatch(value)
    ):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_text(query: MetaQuery) -> str:
    """The compact form; ``parse_text(to_text(q)) == q`` (datetimes come back as strings)."""
    parts = []
    for cond in query.conditions:
        if isinstance(cond.value, tuple):
            parts.append(f"{cond.field} {cond.op} ({','.join(map(_render, cond.value))})")
        else:
            parts.append(f"{cond.field}{cond.op}{_render(cond.value)}")
    return " ".join(parts)
