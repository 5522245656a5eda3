"""Logical file names (LFNs): the rules every catalog entry obeys, and path helpers.

Pure standard library, no I/O. An LFN is an absolute, case-sensitive, POSIX-like path:

- it starts with ``/``; ``/`` alone is the root directory;
- its characters are ASCII letters, digits, ``/`` and ``_ - . + = , : @ %`` (``ALLOWED``);
  no spaces, no control characters (NUL included), no other punctuation, no non-ASCII;
- no empty component (``//``), no trailing ``/`` (except the root), no ``.`` or ``..``
  component (names merely containing dots, like ``run.simtel.zst`` or ``..x``, are fine);
- at most ``MAX_LFN_LENGTH`` characters in total and ``MAX_COMPONENT_LENGTH`` per component.

An optional ``LFN:`` prefix (any letter case, as in DIRAC JDLs) is stripped by ``check_lfn``;
nothing else is rewritten: an LFN that breaks a rule is refused, never "fixed". Each refusal is
an ``InvalidInput`` whose message names the LFN and the rule, and whose ``detail`` has ``lfn``
and ``rule`` (one of the ``RULE_*`` constants).
"""

from __future__ import annotations

import string

from ctaprod.core.errors import InvalidInput

__all__ = [
    "ALLOWED",
    "MAX_COMPONENT_LENGTH",
    "MAX_LFN_LENGTH",
    "ROOT",
    "ancestors_dirs",
    "check_lfn",
    "is_under",
    "join",
    "parent",
    "split",
]

ROOT = "/"
MAX_LFN_LENGTH = 1024
MAX_COMPONENT_LENGTH = 255
PUNCTUATION = "_-.+=,:@%"
ALLOWED = frozenset(string.ascii_letters + string.digits + PUNCTUATION + "/")
PREFIX = "LFN:"

RULE_TYPE = "type"
RULE_EMPTY = "empty"
RULE_CONTROL = "control_character"
RULE_ABSOLUTE = "absolute"
RULE_LENGTH = "length"
RULE_CHARACTER = "character"
RULE_EMPTY_COMPONENT = "empty_component"
RULE_TRAILING_SLASH = "trailing_slash"
RULE_DOT_COMPONENT = "dot_component"
RULE_COMPONENT_LENGTH = "component_length"

_SHOWN = 120  # longest LFN quoted in full in an error message


def _refuse(lfn: str, rule: str, why: str) -> InvalidInput:
    shown = lfn if len(lfn) <= _SHOWN else lfn[:_SHOWN] + "..."
    return InvalidInput(f"invalid LFN {shown!r}: {why}", lfn=lfn, rule=rule)


def check_lfn(lfn: str) -> str:
    """Return ``lfn`` without its optional ``LFN:`` prefix, or raise ``InvalidInput``.

    Rules are checked in this order, and the first one broken is reported: type, empty,
    control characters, absolute, total length, allowed characters, ``//``, trailing ``/``,
    ``.``/``..`` components, component length.
    """
    if not isinstance(lfn, str):
        raise InvalidInput(f"invalid LFN {lfn!r}: must be a string", lfn=lfn, rule=RULE_TYPE)
    path = lfn[len(PREFIX) :] if lfn[: len(PREFIX)].upper() == PREFIX else lfn
    if _plainly_valid(path):  # the fast path, for bulk registration
        return path
    _find_broken_rule(lfn, path)
    return path  # e.g. a component starting with '.', like '/a/.b'


def _plainly_valid(path: str) -> bool:
    return (
        path.startswith("/")
        and len(path) <= MAX_LFN_LENGTH
        and ALLOWED.issuperset(path)
        and "//" not in path
        and "/." not in path
        and (path == ROOT or path[-1] != "/")
        and (
            len(path) <= MAX_COMPONENT_LENGTH + 1
            or all(len(part) <= MAX_COMPONENT_LENGTH for part in path.split("/"))
        )
    )


def _find_broken_rule(lfn: str, path: str) -> None:
    if not path:
        raise _refuse(lfn, RULE_EMPTY, "is empty")
    for index, char in enumerate(path):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise _refuse(lfn, RULE_CONTROL, f"control character {char!r} at position {index}")
    if not path.startswith("/"):
        raise _refuse(lfn, RULE_ABSOLUTE, "must be absolute (start with '/')")
    if len(path) > MAX_LFN_LENGTH:
        why = f"is {len(path)} characters long, the limit is {MAX_LFN_LENGTH}"
        raise _refuse(lfn, RULE_LENGTH, why)
    for index, char in enumerate(path):
        if char not in ALLOWED:
            why = (
                f"character {char!r} at position {index} is not allowed (allowed: ASCII "
                f"letters, digits, '/' and {' '.join(PUNCTUATION)})"
            )
            raise _refuse(lfn, RULE_CHARACTER, why)
    if "//" in path:
        why = f"empty component ('//' at position {path.index('//')})"
        raise _refuse(lfn, RULE_EMPTY_COMPONENT, why)
    if path != ROOT and path.endswith("/"):
        raise _refuse(lfn, RULE_TRAILING_SLASH, "must not end with '/'")
    for part in path.split("/"):
        if part in (".", ".."):
            raise _refuse(lfn, RULE_DOT_COMPONENT, f"'{part}' components are not allowed")
        if len(part) > MAX_COMPONENT_LENGTH:
            why = (
                f"component {part[:40]!r}... is {len(part)} characters long, "
                f"the limit is {MAX_COMPONENT_LENGTH}"
            )
            raise _refuse(lfn, RULE_COMPONENT_LENGTH, why)


def split(lfn: str) -> tuple[str, str]:
    """``(directory, name)``: ``split("/a/b/f")`` is ``("/a/b", "f")``; the root has no name."""
    path = check_lfn(lfn)
    if path == ROOT:
        raise InvalidInput("the root directory '/' has no parent and no name", lfn=lfn)
    head, _, name = path.rpartition("/")
    return head or ROOT, name


def parent(lfn: str) -> str:
    """The directory holding ``lfn``: ``/a`` for ``/a/b``, ``/`` for ``/a``."""
    return split(lfn)[0]


def ancestors_dirs(lfn: str) -> list[str]:
    """Directories from ``/`` down to the parent: ``/a/b/f`` gives ``["/", "/a", "/a/b"]``.

    The root itself has no ancestors (``[]``).
    """
    path = check_lfn(lfn)
    if path == ROOT:
        return []
    parts = path.split("/")[1:-1]
    return [ROOT] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def join(directory: str, name: str) -> str:
    """``directory`` + ``/`` + ``name``; ``name`` is a relative path (one or more components).

    The result is checked like any LFN, so ``name`` may not contain ``..``, ``//`` or a
    trailing ``/``.
    """
    base = check_lfn(directory)
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"cannot join {name!r} to {base!r}: the name is empty", lfn=base)
    if name.startswith("/"):
        raise InvalidInput(f"cannot join {name!r} to {base!r}: the name is absolute", lfn=base)
    return check_lfn(base + name if base == ROOT else f"{base}/{name}")


def is_under(lfn: str, directory: str, *, or_equal: bool = False) -> bool:
    """Whether ``lfn`` lies below ``directory`` (at any depth); ``/a/bc`` is not under ``/a/b``.

    A path is not under itself unless ``or_equal`` is true. Every LFN but ``/`` is under ``/``.
    """
    path, base = check_lfn(lfn), check_lfn(directory)
    if path == base:
        return or_equal
    return path.startswith(base if base == ROOT else base + "/")
