"""Tests for ctaprod.core.lfn: the LFN rules and the path helpers."""

from __future__ import annotations

import itertools
import posixpath
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctaprod.core import lfn
from ctaprod.core.errors import InvalidInput
from ctaprod.core.lfn import ancestors_dirs, check_lfn, is_under, join, parent, split


def _refusal(value: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        check_lfn(value)  # type: ignore[arg-type]
    return info.value


# -- valid LFNs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/",
        "/vo.cta.in2p3.fr",
        "/vo.cta.in2p3.fr/MC/PROD6/LaPalma/gamma/sim_telarray/1234/Data/000xxx/run000001.simtel.zst",
        "/a/.hidden",
        "/a/..b/c...",
        "/user/x/name_with-all+the=allowed,chars:@%",
        "/CaseMatters/casematters",
        "/" + "x" * lfn.MAX_COMPONENT_LENGTH,
        ("/" + "y" * 99) * 10 + "/" + "z" * 23,  # exactly MAX_LFN_LENGTH
    ],
)
def test_valid_lfns_come_back_unchanged(value: str) -> None:
    assert check_lfn(value) == value


def test_max_length_is_inclusive() -> None:
    value = ("/" + "y" * 99) * 10 + "/" + "z" * 23
    assert len(value) == lfn.MAX_LFN_LENGTH
    assert check_lfn(value) == value


@pytest.mark.parametrize("prefix", ["LFN:", "lfn:", "Lfn:"])
def test_the_lfn_prefix_is_stripped(prefix: str) -> None:
    assert check_lfn(prefix + "/vo/file") == "/vo/file"


def test_lfns_are_case_sensitive() -> None:
    assert check_lfn("/VO/File") != check_lfn("/vo/file")
    assert not is_under("/VO/a", "/vo")


# -- each rule, with its exact message ------------------------------------------------------


_NOT_ALLOWED = "is not allowed (allowed: ASCII letters, digits, '/' and _ - . + = , : @ %)"


@pytest.mark.parametrize(
    ("value", "rule", "message"),
    [
        ("", "empty", "invalid LFN '': is empty"),
        ("LFN:", "empty", "invalid LFN 'LFN:': is empty"),
        ("/a\x00b", "control_character", r"'/a\x00b': control character '\x00' at position 2"),
        ("/a/b\n", "control_character", r"'/a/b\n': control character '\n' at position 4"),
        ("/a\tb", "control_character", r"'/a\tb': control character '\t' at position 2"),
        ("/a\x7f", "control_character", r"'/a\x7f': control character '\x7f' at position 2"),
        ("vo/f", "absolute", "invalid LFN 'vo/f': must be absolute (start with '/')"),
        ("LFN:vo/f", "absolute", "invalid LFN 'LFN:vo/f': must be absolute (start with '/')"),
        ("/a b", "character", f"invalid LFN '/a b': character ' ' at position 2 {_NOT_ALLOWED}"),
        ("/a/b*", "character", f"invalid LFN '/a/b*': character '*' at position 4 {_NOT_ALLOWED}"),
        (
            "/caf\u00e9",
            "character",
            f"'/caf\u00e9': character '\u00e9' at position 4 {_NOT_ALLOWED}",
        ),
        ("/a\\b", "character", f"'/a\\\\b': character '\\\\' at position 2 {_NOT_ALLOWED}"),
        ("//a", "empty_component", "invalid LFN '//a': empty component ('//' at position 0)"),
        ("/a//b", "empty_component", "invalid LFN '/a//b': empty component ('//' at position 2)"),
        ("/a/", "trailing_slash", "invalid LFN '/a/': must not end with '/'"),
        ("/a/..", "dot_component", "invalid LFN '/a/..': '..' components are not allowed"),
        ("/a/../b", "dot_component", "invalid LFN '/a/../b': '..' components are not allowed"),
        ("/./a", "dot_component", "invalid LFN '/./a': '.' components are not allowed"),
        ("/a/.", "dot_component", "invalid LFN '/a/.': '.' components are not allowed"),
    ],
)
def test_each_rule_has_its_exact_error(value: str, rule: str, message: str) -> None:
    error = _refusal(value)
    expected = message if message.startswith("invalid LFN ") else "invalid LFN " + message
    assert error.message == expected
    assert error.detail == {"lfn": value, "rule": rule}


def test_not_a_string() -> None:
    error = _refusal(None)
    assert error.message == "invalid LFN None: must be a string"
    assert error.detail["rule"] == "type"


def test_too_long() -> None:
    value = "/x" * 513  # 1026 characters
    error = _refusal(value)
    assert error.message == (
        f"invalid LFN {value[:120] + '...'!r}: is 1026 characters long, the limit is 1024"
    )
    assert error.detail == {"lfn": value, "rule": "length"}


def test_component_too_long() -> None:
    long_name = "n" * 256
    error = _refusal(f"/vo/{long_name}/f")
    assert error.detail["rule"] == "component_length"
    assert error.message.endswith(
        f": component {'n' * 40!r}... is 256 characters long, the limit is 255"
    )


def test_first_broken_rule_is_reported() -> None:
    # relative AND with a space AND with '..': the absolute rule comes first
    assert _refusal("a b/../c").detail["rule"] == "absolute"
    # a control character is reported before anything else
    assert _refusal("a\x00//").detail["rule"] == "control_character"
    # the character rule comes before '//' and '..'
    assert _refusal("/a*//../").detail["rule"] == "character"


# -- helpers --------------------------------------------------------------------------------


def test_split_and_parent() -> None:
    assert split("/vo/a/file.txt") == ("/vo/a", "file.txt")
    assert split("/vo") == ("/", "vo")
    assert split("LFN:/vo/f") == ("/vo", "f")
    assert parent("/vo/a/file.txt") == "/vo/a"
    assert parent("/vo") == "/"
    with pytest.raises(InvalidInput, match="the root directory '/' has no parent and no name"):
        parent("/")
    with pytest.raises(InvalidInput, match="must not end with '/'"):
        split("/vo/")


def test_ancestors_dirs() -> None:
    assert ancestors_dirs("/vo/a/b/file") == ["/", "/vo", "/vo/a", "/vo/a/b"]
    assert ancestors_dirs("/vo") == ["/"]
    assert ancestors_dirs("/") == []


def test_join() -> None:
    assert join("/", "vo") == "/vo"
    assert join("/vo", "a") == "/vo/a"
    assert join("/vo", "a/b/file") == "/vo/a/b/file"
    assert join("LFN:/vo", "f") == "/vo/f"
    with pytest.raises(InvalidInput, match="cannot join '/x' to '/vo': the name is absolute"):
        join("/vo", "/x")
    with pytest.raises(InvalidInput, match="cannot join '' to '/vo': the name is empty"):
        join("/vo", "")
    with pytest.raises(InvalidInput, match=re.escape("'..' components are not allowed")):
        join("/vo", "../etc")
    with pytest.raises(InvalidInput, match="must not end with '/'"):
        join("/vo", "a/")
    with pytest.raises(InvalidInput, match="must be absolute"):
        join("vo", "a")


def test_is_under() -> None:
    assert is_under("/vo/a/f", "/vo")
    assert is_under("/vo/a/f", "/vo/a")
    assert is_under("/vo", "/")
    assert not is_under("/vo/ab", "/vo/a")
    assert not is_under("/vo", "/vo/a")
    assert not is_under("/vo", "/vo")
    assert is_under("/vo", "/vo", or_equal=True)
    assert not is_under("/", "/")
    assert is_under("/", "/", or_equal=True)
    with pytest.raises(InvalidInput, match="invalid LFN 'vo'"):
        is_under("/vo/a", "vo")


# -- properties -----------------------------------------------------------------------------

_CHARS = "".join(sorted(lfn.ALLOWED - {"/"}))
_component = st.text(_CHARS, min_size=1, max_size=12).filter(lambda c: c not in (".", ".."))
_paths = st.lists(_component, min_size=1, max_size=8).map(lambda parts: "/" + "/".join(parts))


@given(_paths)
def test_valid_paths_pass_and_agree_with_posixpath(path: str) -> None:
    assert check_lfn(path) == path
    assert posixpath.normpath(path) == path
    directory, name = split(path)
    assert (directory, name) == posixpath.split(path)
    assert join(directory, name) == path
    assert parent(path) == posixpath.dirname(path)
    chain = ancestors_dirs(path)
    assert chain[0] == "/"
    assert chain[-1] == parent(path)
    assert len(chain) == path.count("/")
    assert all(is_under(path, d) for d in chain)
    assert all(is_under(b, a) for a, b in itertools.pairwise(chain))


_RULES = {
    "empty", "control_character", "absolute", "length", "character",
    "empty_component", "trailing_slash", "dot_component", "component_length",
}  # fmt: skip


def _rule_broken(text: str) -> str | None:
    try:
        check_lfn(text)
    except InvalidInput as error:
        return str(error.detail["rule"])
    return None


@given(st.text(max_size=40))
def test_any_text_is_either_valid_or_refused_with_a_rule(text: str) -> None:
    rule = _rule_broken(text)
    if rule is None:
        result = check_lfn(text)
        assert result.startswith("/")
        assert lfn.ALLOWED.issuperset(result)
        assert check_lfn(result) == result
    else:
        assert rule in _RULES
