"""Parse and render DIRAC job descriptions (JDL, the ClassAd surface syntax).

Pure standard library, no I/O. Accepted forms, as DIRAC users write them::

    [
        JobName = "Simple_Job";          // trailing comments are fine
        Executable = /bin/ls;            # bare words are strings
        InputSandbox = {"testJob.sh", "LFN:/vo/user/x.txt",};
        Parameters = 10; ParameterStep = 2.5; Debug = True;
    ]

The enclosing brackets and the final ``;`` are optional. Values are strings (double or
single quoted, with ``\\" \\' \\\\ \\n \\t \\r`` escapes), integers, floats, booleans,
``{...}`` lists (nested, trailing comma allowed) and bare words. A bare word runs until
``;``, ``,``, ``}``, ``]``, a newline or a comment that follows a space; a bare word that
reads as a number or as true/false becomes one, except inside the lists of a parameter set
(``Parameters``, ``Parameters.X``): DIRAC substitutes those values as the text written, so
``{1.50, 1e3}`` stays ``["1.50", "1e3"]``. Attribute names keep their spelling but a name
repeated in any letter case is an error.

Limits (a description is text from anyone): at most ``MAX_TEXT`` characters, lists nested
at most ``MAX_DEPTH`` deep, strings and bare words at most ``MAX_VALUE`` characters,
integers within 64 bits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["JDLSyntaxError", "JDLValue", "format_jdl", "format_value", "parse_jdl"]

JDLValue: TypeAlias = "str | int | float | bool | list[JDLValue]"

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# What a forgotten value looks like: the next line already starts a new attribute.
_ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[ \t]*=(?!=)")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_BARE_STOPS = frozenset(";,}]\n")
MAX_TEXT = 16 * 1024 * 1024
MAX_DEPTH = 16
MAX_VALUE = 1024 * 1024
_INT64 = 2**63


class JDLSyntaxError(ValueError):
    """A JDL text could not be parsed; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"JDL syntax error at line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


def parse_jdl(text: str) -> dict[str, JDLValue]:
    """Parse JDL text into an ordered dict of attribute -> value."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.result: dict[str, JDLValue] = {}
        self.first_seen: dict[str, tuple[str, int]] = {}  # lower-case name -> (name, line)

    # -- helpers ---------------------------------------------------------------------------

    def _line_col(self, pos: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - (self.text.rfind("\n", 0, pos) + 1) + 1

    def _error(self, message: str, pos: int | None = None) -> JDLSyntaxError:
        line, column = self._line_col(self.pos if pos is None else pos)
        return JDLSyntaxError(message, line, column)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _found(self) -> str:
        char = self._peek()
        if not char:
            return "the end of the text"
        return '"\'"' if char == "'" else f"'{char}'"

    def _skip(self) -> None:
        """Skip whitespace and comments."""
        text = self.text
        while self.pos < len(text):
            if text[self.pos].isspace():
                self.pos += 1
            elif text[self.pos] == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self._error("unterminated comment: '/*' is never closed by '*/'")
                self.pos = end + 2
            else:
                return

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> dict[str, JDLValue]:
        if len(self.text) > MAX_TEXT:
            raise JDLSyntaxError(f"the description is longer than {MAX_TEXT} characters", 1, 1)
        self._skip()
        if self._peek() != "[":
            self._statements(bracket=None)
            return self.result
        bracket = self.pos
        self.pos += 1
        self._statements(bracket=bracket)
        self.pos += 1  # the closing ']'
        self._skip()
        if self.pos < len(self.text):
            raise self._error(f"unexpected text after the closing ']': {self._found()}")
        return self.result

    def _statements(self, bracket: int | None) -> None:
        """Parse ``Key = value;`` statements up to the end of text or the closing ']'."""
        while True:
            self._skip()
            char = self._peek()
            if not char:
                if bracket is not None:
                    raise self._error("the '[' opened here is never closed by ']'", bracket)
                return
            if char == "]":
                if bracket is None:
                    raise self._error("unexpected ']' without a matching '['")
                return
            if char == ";":  # empty statement
                self.pos += 1
                continue
            key = self._statement()
            self._skip()
            char = self._peek()
            if char == ";":
                self.pos += 1
            elif char not in ("", "]"):
                raise self._error(f"expected ';' after the value of '{key}', found {self._found()}")

    def _statement(self) -> str:
        match = _KEY_RE.match(self.text, self.pos)
        if match is None:
            raise self._error(f"expected an attribute name, found {self._found()}")
        key, key_pos = match.group(), self.pos
        line = self._line_col(key_pos)[0]
        previous = self.first_seen.get(key.lower())
        if previous is not None:
            spelled = "" if previous[0] == key else f" as '{previous[0]}'"
            message = f"duplicate attribute '{key}' (first set at line {previous[1]}{spelled})"
            raise self._error(message, key_pos)
        self.first_seen[key.lower()] = (key, line)
        self.pos = match.end()
        self._skip()
        if self._peek() != "=":
            raise self._error(f"expected '=' after attribute name '{key}', found {self._found()}")
        self.pos += 1
        after_equals = self.pos
        self._skip()
        if "\n" in self.text[after_equals : self.pos] and _ASSIGNMENT_RE.match(self.text, self.pos):
            raise self._error(f"missing value after '{key} ='", after_equals)
        self.result[key] = self._value(key)
        return key

    def _value(self, key: str | None, as_text: bool = False) -> JDLValue:
        """Parse one value; ``key`` is None inside a list; ``as_text`` keeps bare words as
        written (list items of a parameter set)."""
        char = self._peek()
        if char in ('"', "'"):
            return self._string()
        if char == "{":
            return self._list(as_text or (key is not None and _is_parameter_set(key)))
        if key is not None and char in ("", ";", "]"):
            raise self._error(f"missing value after '{key} ='")
        if char in ("=", "[", "}", ","):
            raise self._error(f"unexpected character '{char}' where a value was expected")
        return self._bare_word(as_text)

    def _string(self) -> str:
        text, quote, start = self.text, self.text[self.pos], self.pos
        parts: list[str] = []
        i = start + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self._error(f"unterminated string: the {quote} here is never closed", start)
            char = text[i]
            if char == quote:
                self.pos = i + 1
                if i - start > MAX_VALUE:
                    raise self._error(f"a string longer than {MAX_VALUE} characters", start)
                return "".join(parts)
            if char == "\\":
                if i + 1 >= len(text) or text[i + 1] == "\n":
                    raise self._error(
                        f"unterminated string: the {quote} here is never closed", start
                    )
                escaped = text[i + 1]
                parts.append(_ESCAPES.get(escaped, "\\" + escaped))
                i += 2
            else:
                parts.append(char)
                i += 1

    def _list(self, as_text: bool) -> list[JDLValue]:
        if self.depth >= MAX_DEPTH:
            raise self._error(f"lists nested more than {MAX_DEPTH} deep")
        self.depth += 1
        try:
            return self._items(as_text)
        finally:
            self.depth -= 1

    def _items(self, as_text: bool) -> list[JDLValue]:
        start = self.pos
        self.pos += 1
        items: list[JDLValue] = []
        while True:
            self._skip()
            char = self._peek()
            if char == "}":
                self.pos += 1
                return items
            if char in ("", ";", "]"):
                raise self._error("unterminated list: the '{' here is never closed by '}'", start)
            if char == ",":
                raise self._error("missing list element before ','")
            items.append(self._value(None, as_text))
            self._skip()
            char = self._peek()
            if char == ",":
                self.pos += 1
            elif char in ("", ";", "]"):
                raise self._error("unterminated list: the '{' here is never closed by '}'", start)
            elif char != "}":
                raise self._error(f"expected ',' or '}}' in the list, found {self._found()}")

    def _bare_word(self, as_text: bool = False) -> JDLValue:
        text, start = self.text, self.pos
        i = start
        while i < len(text) and text[i] not in _BARE_STOPS:
            if (
                i > start
                and text[i - 1].isspace()
                and (text[i] == "#" or text.startswith("//", i) or text.startswith("/*", i))
            ):
                break  # a comment after the word
            i += 1
        self.pos = i
        word = text[start:i].strip()
        if len(word) > MAX_VALUE:
            raise self._error(f"a value longer than {MAX_VALUE} characters", start)
        if as_text:
            return word
        value = _bare_value(word)
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            raise self._error("an integer out of range (at most 64 bits)", start)
        return value


def _is_parameter_set(key: str) -> bool:
    """``Parameters`` or ``Parameters.<name>``, in any letter case."""
    return key.lower() == "parameters" or key.lower().startswith("parameters.")


def _bare_value(word: str) -> JDLValue:
    if word.lower() == "true":
        return True
    if word.lower() == "false":
        return False
    if _INT_RE.fullmatch(word):
        return int(word) if len(word) <= 40 else _INT64  # past 40 digits: out of range
    if _FLOAT_RE.fullmatch(word) and math.isfinite(number := float(word)):
        return number
    return word


def format_jdl(attrs: Mapping[str, JDLValue]) -> str:
    """Render attributes back to bracketed JDL text (strings quoted/escaped, lists in braces);
    parse_jdl(format_jdl(d)) == d."""
    seen: dict[str, str] = {}
    lines = ["["]
    for key, value in attrs.items():
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid JDL attribute name {key!r}")
        if key.lower() in seen:
            raise ValueError(f"attribute {key!r} clashes with {seen[key.lower()]!r}")
        seen[key.lower()] = key
        lines.append(f"    {key} = {format_value(value)};")
    lines.append("]")
    return "\n".join(lines) + "\n"


def format_value(value: object) -> str:
    """One value as JDL text: a quoted string, a number, true/false or a ``{...}`` list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"JDL cannot represent the number {value!r}")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(format_value(item) for item in value) + "}"
    raise TypeError(f"JDL cannot represent a value of type {type(value).__name__}")
