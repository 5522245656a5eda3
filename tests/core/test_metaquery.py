"""Tests for ctaprod.core.metaquery: the metadata query language."""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctaprod.core.errors import InvalidInput
from ctaprod.core.metaquery import (
    Condition,
    FieldType,
    MetaQuery,
    MetaSchema,
    Op,
    check_field_name,
    coerce,
    effective_metadata,
    equality_keys,
    matches,
    parse,
    parse_mapping,
    parse_text,
    to_dict,
    to_text,
    validate,
)
from tests.fixtures import fixture_dir

CTA_SCHEMA = MetaSchema(
    {
        "MCCampaign": "string",
        "site": "string",
        "particle": "string",
        "tel_sim_prog": "string",
        "tel_sim_prog_version": "string",
        "thetaP": "float",
        "phiP": "float",
        "data_level": "int",
        "configuration_id": "int",
        "nsb": "int",
        "runNumber": "int",
        "array_layout": "string",
        "outputType": "string",
        "start": "datetime",
    }
)


def _q(*conditions: tuple[str, str, Any]) -> MetaQuery:
    return MetaQuery(tuple(Condition(f, Op(o), v) for f, o, v in conditions))


def _invalid(call: Callable[[], object]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        call()
    return info.value


def _datasets() -> list[Path]:
    return sorted((fixture_dir("ctadirac") / "datasets").glob("*.json"))


# -- the CTADIRAC dataset files, as they are written ----------------------------------------


def test_there_are_dataset_fixtures() -> None:
    assert len(_datasets()) == 2


@pytest.mark.parametrize("path", _datasets(), ids=lambda p: p.name)
def test_dataset_file_parses_validates_and_round_trips(path: Path) -> None:
    text = path.read_text()
    assert text.lstrip().startswith("{'")  # a Python literal, not JSON
    query = validate(text, CTA_SCHEMA)
    keys = equality_keys(query)
    assert all(cond.op is Op.EQ for cond in query.conditions)
    assert keys["thetaP"] == 20.0
    assert isinstance(keys["thetaP"], float)  # written as the int 20, declared float
    assert keys["data_level"] == -1
    assert keys["tel_sim_prog"] == "sim_telarray"
    assert keys["tel_sim_prog_version"] == "2020-06-29b"
    assert validate(to_text(query), CTA_SCHEMA) == query
    assert validate(to_dict(query), CTA_SCHEMA) == query
    assert validate(json.dumps(to_dict(query)), CTA_SCHEMA) == query


def test_prod5b_dataset_content() -> None:
    path = next(p for p in _datasets() if p.name.startswith("Prod5b"))
    query = validate(path.read_text(), CTA_SCHEMA)
    assert equality_keys(query) == {
        "thetaP": 20.0, "data_level": -1, "particle": "electron", "nsb": 1,
        "array_layout": "Advanced-Baseline", "outputType": "Data", "configuration_id": 15,
        "site": "LaPalma", "MCCampaign": "Prod5bTest", "tel_sim_prog_version": "2020-06-29b",
        "phiP": 180.0, "tel_sim_prog": "sim_telarray",
    }  # fmt: skip
    meta = {**equality_keys(query), "runNumber": 7}
    assert matches(query, meta)
    assert not matches(query, {**meta, "particle": "gamma"})
    assert not matches(query, {k: v for k, v in meta.items() if k != "nsb"})


# -- the mapping form -----------------------------------------------------------------------


def test_mapping_forms() -> None:
    query = parse_mapping(
        {
            "thetaP": {"=": 20},
            "particle": "electron",
            "phiP": {"==": 180.0},
            "runNumber": {">=": 10, "<": 20},
            "site": {"in": ["LaPalma", "Paranal"]},
            "nsb": [1, 5],
            "MCCampaign": {"not in": ["Prod3"]},
            "array_layout": {"=": ["A", "B"]},
            "outputType": {"!=": ("Log", "Other")},
        }
    )
    assert query == _q(
        ("MCCampaign", "nin", ("Prod3",)),
        ("array_layout", "in", ("A", "B")),
        ("nsb", "in", (1, 5)),
        ("outputType", "nin", ("Log", "Other")),
        ("particle", "=", "electron"),
        ("phiP", "=", 180.0),
        ("runNumber", ">=", 10),
        ("runNumber", "<", 20),
        ("site", "in", ("LaPalma", "Paranal")),
        ("thetaP", "=", 20),
    )
    assert query.fields[:3] == ("MCCampaign", "array_layout", "nsb")
    assert to_dict(query)["runNumber"] == {"<": 20, ">=": 10}


def test_conditions_are_sorted_and_deduplicated() -> None:
    a = _q(("b", "=", 1), ("a", "<", 3), ("a", ">", 1))
    b = _q(("a", ">", 1), ("b", "=", 1), ("a", "<", 3), ("b", "=", 1))
    assert a == b
    assert to_text(a) == "a<3 a>1 b=1"
    assert _q(("x", "in", [1, 2, 1])).conditions[0].value == (1, 2)


def test_one_operator_per_field() -> None:
    assert _invalid(lambda: parse_text("nsb!=1 nsb!=5")).message == (
        "field 'nsb' has two '!=' conditions: use 'nin' with a list"
    )
    assert _invalid(lambda: parse_text("x=1 x=2")).message == (
        "field 'x' has two '=' conditions: use 'in' with a list"
    )
    assert "keep one" in _invalid(lambda: parse_text("x<1 x<2")).message


_VALID_OPS = "valid operators: = != < <= > >= in nin"
_NAME_RULE = "use letters, digits and '_', not starting with a digit"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"thetaP": {"~": 20}}, f"unknown operator '~' for field 'thetaP'; {_VALID_OPS}"),
        ({"thetaP": {"like": 20}}, f"unknown operator 'like' for field 'thetaP'; {_VALID_OPS}"),
        ({"thetaP": {}}, "field 'thetaP': empty operator mapping"),
        ({"thetaP": None}, "field 'thetaP': value None is not a number, a string or a date"),
        ({"thetaP": True}, "field 'thetaP': value True is not a number, a string or a date"),
        ({"thetaP": {1, 2}}, "field 'thetaP': value {1, 2} is not a number, a string or a date"),
        ({"thetaP": {"<": [1, 2]}}, "operator '<' on field 'thetaP' takes one value"),
        ({"1x": 2}, f"invalid metadata field name '1x': {_NAME_RULE}"),
        ({"a-b": 2}, f"invalid metadata field name 'a-b': {_NAME_RULE}"),
    ],
)  # fmt: skip
def test_bad_mappings(data: dict[str, Any], message: str) -> None:
    assert _invalid(lambda: parse_mapping(data)).message == message


def test_unknown_operator_is_also_refused_by_validate() -> None:
    error = _invalid(lambda: validate({"nsb": {"=~": 1}}, CTA_SCHEMA))
    assert error.message.startswith("unknown operator '=~' for field 'nsb'")
    assert error.detail == {"field": "nsb", "operator": "=~"}


def test_parse_dispatches_on_the_form() -> None:
    query = _q(("nsb", "=", 1))
    assert parse(query) is query
    assert parse({"nsb": 1}) == parse("nsb=1") == parse("{'nsb': 1}") == parse('{"nsb": 1}')
    assert parse("") == parse("   ") == parse({}) == MetaQuery()
    assert "not list" in _invalid(lambda: parse([1])).message  # type: ignore[arg-type]


# -- the text of a dataset file -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{'a': foo}", "line 1, column 7: only literal values are allowed"),
        ("{'a': 1,,}", "line 1, column 9: invalid syntax"),
        ("{'a':\n  __import__('os')}", "line 2, column 3: only literal values are allowed"),
        ("{'a': 1", "line 1, column 1: '{' was never closed"),
        ("{'a': 1} + 1", "line 1, column 1: only literal values are allowed"),
    ],
)
def test_malformed_literal_text(text: str, message: str) -> None:
    assert _invalid(lambda: parse_text(text)).message == "query syntax error at " + message


def test_literal_text_is_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    _invalid(lambda: parse_text(f"{{'a': open({str(marker)!r}, 'w')}}"))
    assert not marker.exists()


def test_literal_must_be_a_mapping_with_supported_values() -> None:
    assert "is not a number" in _invalid(lambda: parse_text("{'a': b'x'}")).message
    assert "is not a number" in _invalid(lambda: parse_text('{"a": null}')).message
    assert "null bytes" in _invalid(lambda: parse_text("{'a': 1}\x00")).message
    deep_json = '{"a": ' + "[" * 30000 + "]" * 30000 + "}"
    assert _invalid(lambda: parse_text(deep_json)).message == "metadata query nested too deeply"
    deep_literal = "{'a': " + "[" * 30000 + "]" * 30000 + "}"
    assert "too many nested parentheses" in _invalid(lambda: parse_text(deep_literal)).message


# -- the compact text form ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("particle=gamma", [("particle", "=", "gamma")]),
        ("particle == gamma", [("particle", "=", "gamma")]),
        ("thetaP>=20 nsb!=5", [("thetaP", ">=", 20), ("nsb", "!=", 5)]),
        ("site in (LaPalma,Paranal)", [("site", "in", ("LaPalma", "Paranal"))]),
        ("site IN ( LaPalma , Paranal , )", [("site", "in", ("LaPalma", "Paranal"))]),
        ("site in(LaPalma)", [("site", "in", ("LaPalma",))]),
        ("site in LaPalma", [("site", "in", ("LaPalma",))]),
        ("site=LaPalma,Paranal", [("site", "in", ("LaPalma", "Paranal"))]),
        ("site!=LaPalma, Paranal", [("site", "nin", ("LaPalma", "Paranal"))]),
        ("site nin (a) b not  in (c)", [("site", "nin", ("a",)), ("b", "nin", ("c",))]),
        ("a=1 and b=2 AND c=3", [("a", "=", 1), ("b", "=", 2), ("c", "=", 3)]),
        ("and=1", [("and", "=", 1)]),
        ("x=and", [("x", "=", "and")]),
        ('x="two words"', [("x", "=", "two words")]),
        (r'x="a \"b\" \\ c"', [("x", "=", 'a "b" \\ c')]),
        ('x="20"', [("x", "=", "20")]),
        ("x=-3 y=0.5 z=1e3", [("x", "=", -3), ("y", "=", 0.5), ("z", "=", 1000.0)]),
        ("w=-2.5e-3 u=.5 t=2.", [("w", "=", -0.0025), ("u", "=", 0.5), ("t", "=", 2.0)]),
        ("x=007 y=+5 z=1.2.3", [("x", "=", "007"), ("y", "=", "+5"), ("z", "=", "1.2.3")]),
        ("v=2020-06-29b", [("v", "=", "2020-06-29b")]),
        ("t>=2024-01-01T10:00:00", [("t", ">=", "2024-01-01T10:00:00")]),
        ("x in ()", [("x", "in", ())]),
        ("  x=1\n\ty=2  ", [("x", "=", 1), ("y", "=", 2)]),
    ],
)  # fmt: skip
def test_compact_form(text: str, expected: list[tuple[str, str, Any]]) -> None:
    assert parse_text(text) == _q(*expected)


def test_quotes_and_backslashes() -> None:
    assert equality_keys(parse_text(r"x='it\'s'")) == {"x": "it's"}
    assert equality_keys(parse_text("x='say \"hi\"'")) == {"x": 'say "hi"'}
    assert equality_keys(parse_text(r"x=a\b")) == {"x": "a\\b"}  # bare: literal backslash
    assert "found \"'s'\"" in _invalid(lambda: parse_text("x='it''s'")).message  # no SQL doubling


_VALUE = "expected a value (quote values with spaces or = ! < > ( ) ,)"
_OPERATOR = "expected an operator after"
_OPS = "(= != < <= > >= in nin)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("thetaP>=", f"position 9: {_VALUE}, found the end of the text"),
        ("thetaP~20", "position 7: expected an operator after 'thetaP', found '~20'"),
        ("thetaP 20", f"position 8: {_OPERATOR} 'thetaP' {_OPS}, found '20'"),
        ("1x=2", "position 1: expected a field name, found '1x'"),
        ("x=1 =2", "position 5: expected a field name, found '='"),
        ("x=1 (", "position 5: expected a field name, found '('"),
        ("x=<3", f"position 3: {_VALUE}, found '<'"),
        ("x<(1,2)", "position 3: operator '<' takes one value, not a list, found '('"),
        ("x>=1,2", "position 5: operator '>=' takes one value, not a list, found ','"),
        ("x in (a b)", "position 9: expected ',' or ')', found 'b'"),
        ("x in (a,", f"position 9: {_VALUE}, found the end of the text"),
        ('x="abc', f"position 3: {_VALUE}, found an unterminated quoted value"),
        ("x=1 and", f"position 8: {_OPERATOR} 'and' {_OPS}, found the end of the text"),
        ("x not y", f"position 7: {_OPERATOR} 'x' {_OPS}, found 'y'"),
    ],
)
def test_malformed_compact_text_gives_the_position(text: str, message: str) -> None:
    error = _invalid(lambda: parse_text(text))
    assert error.message == "query syntax error at " + message
    assert error.detail["position"] == int(message.split(":")[0].split()[1])


def test_text_too_long() -> None:
    assert "longer than 65536" in _invalid(lambda: parse_text("x=1 " * 20000)).message


def test_to_text_quotes_what_needs_quoting() -> None:
    query = _q(
        ("a", "=", "two words"), ("b", "=", "20"), ("c", "=", 'q"uote\\'), ("d", "=", ""),
        ("e", "=", "x=y"), ("f", "in", ("1.5", "p,q", 2)), ("g", "<", -1.5),
    )  # fmt: skip
    text = to_text(query)
    assert text == (
        'a="two words" b="20" c="q\\"uote\\\\" d="" e="x=y" f in ("1.5","p,q",2) g<-1.5'
    )
    assert parse_text(text) == query
    assert str(query) == text


# -- schema and validation ------------------------------------------------------------------


def test_schema() -> None:
    schema = MetaSchema({"a": "INT", "b": FieldType.FLOAT, "c": " String ", "d": "datetime"})
    assert schema.fields == {
        "a": FieldType.INT, "b": FieldType.FLOAT, "c": FieldType.STRING, "d": FieldType.DATETIME
    }  # fmt: skip
    assert _invalid(lambda: MetaSchema({"a": "varchar"})).message == (
        "unknown metadata type 'varchar'; use int, float, string or datetime"
    )
    assert "longer than 64" in _invalid(lambda: MetaSchema({"x" * 65: "int"})).message
    assert check_field_name("x" * 64) == "x" * 64
    assert "field name 'a b'" in _invalid(lambda: check_field_name("a b")).message


def test_undeclared_field_lists_close_matches() -> None:
    error = _invalid(lambda: validate("thetap=20", CTA_SCHEMA))
    assert error.message == "metadata field 'thetap' is not declared; did you mean 'thetaP'?"
    assert error.detail["close_matches"] == ["thetaP"]
    error = _invalid(lambda: validate({"NSB": 1}, CTA_SCHEMA))
    assert error.message == "metadata field 'NSB' is not declared; did you mean 'nsb'?"
    error = _invalid(lambda: validate("run_number=3", CTA_SCHEMA))
    assert error.detail["close_matches"][0] == "runNumber"
    error = _invalid(lambda: validate("colour=red", CTA_SCHEMA))
    assert error.message == "metadata field 'colour' is not declared; no similar field"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("runNumber=abc", "'runNumber' is of type int: value 'abc' is not a valid int"),
        ("runNumber=2.5", "'runNumber' is of type int: value 2.5 is not a valid int "
         "(has a fractional part)"),
        ({"runNumber": 2**63}, f"'runNumber' is of type int: value {2**63} is not a valid int "
         "(out of the 64-bit range)"),
        ({"runNumber": float("inf")}, "'runNumber' is of type int: value inf is not a valid int "
         "(not finite)"),
        ({"thetaP": "1e999"}, "'thetaP' is of type float: value '1e999' is not a valid float "
         "(not finite)"),
        ("thetaP=north", "'thetaP' is of type float: value 'north' is not a valid float"),
        ("site=1.5", "'site' is of type string: value 1.5 is not a valid string"),
        ({"site": "x" * 256}, None),
        ({"site": "a\x00b"}, None),
        ("start>=yesterday", "'start' is of type datetime: value 'yesterday' is not a valid "
         "datetime (Invalid isoformat string: 'yesterday')"),
        ("start>=20", "'start' is of type datetime: value 20 is not a valid datetime"),
        ("nsb in (1,x)", "'nsb' is of type int: value 'x' is not a valid int"),
        ("nsb in ()", "operator 'in' on field 'nsb' needs a non-empty list"),
        ({"nsb": {"nin": []}}, "operator 'nin' on field 'nsb' needs a non-empty list"),
    ],
)  # fmt: skip
def test_validation_errors(query: Any, message: str | None) -> None:
    error = _invalid(lambda: validate(query, CTA_SCHEMA))
    if message is None:
        assert "longer than 255 characters or has a NUL" in error.message
    elif message.startswith("'"):
        assert error.message == "field " + message
    else:
        assert error.message == message


def test_wrong_type_detail() -> None:
    error = _invalid(lambda: validate("runNumber=abc", CTA_SCHEMA))
    assert error.detail == {"field": "runNumber", "value": "abc", "type": "int"}


def test_coercions() -> None:
    query = validate(
        {"runNumber": 20.0, "nsb": "5", "data_level": " -1 ", "configuration_id": "15.0",
         "thetaP": 20, "phiP": "180", "site": 2020, "particle": "gamma"},
        CTA_SCHEMA,
    )  # fmt: skip
    assert equality_keys(query) == {
        "runNumber": 20, "nsb": 5, "data_level": -1, "configuration_id": 15,
        "thetaP": 20.0, "phiP": 180.0, "site": "2020", "particle": "gamma",
    }  # fmt: skip
    types = {k: type(v) for k, v in equality_keys(query).items()}
    assert types["runNumber"] is int
    assert types["thetaP"] is float
    assert validate("nsb in (1, 1.0, '1')", CTA_SCHEMA).conditions[0].value == (1,)


def test_coerce_datetimes() -> None:
    utc = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert coerce("t", FieldType.DATETIME, "2024-01-02T03:04:05") == utc
    assert coerce("t", FieldType.DATETIME, "2024-01-02T03:04:05Z") == utc
    assert coerce("t", FieldType.DATETIME, "2024-01-02T05:04:05+02:00") == utc
    assert coerce("t", FieldType.DATETIME, datetime(2024, 1, 2, 3, 4, 5)) == utc  # noqa: DTZ001
    assert coerce("t", FieldType.DATETIME, date(2024, 1, 2)) == datetime(2024, 1, 2, tzinfo=UTC)
    shifted = coerce("t", FieldType.DATETIME, "2024-01-02T05:04:05+02:00")
    assert isinstance(shifted, datetime)
    assert shifted.utcoffset() == timedelta(0)
    query = validate("start>=2024-01-01 start<'2024-02-01T00:00:00+00:00'", CTA_SCHEMA)
    assert to_dict(query) == {
        "start": {"<": "2024-02-01T00:00:00+00:00", ">=": "2024-01-01T00:00:00+00:00"}
    }
    assert validate(to_text(query), CTA_SCHEMA) == query
    assert matches(query, {"start": utc})
    assert matches(query, {"start": datetime(2024, 1, 2)})  # noqa: DTZ001 (naive is UTC)
    assert not matches(query, {"start": datetime(2024, 2, 1, tzinfo=UTC)})


# -- evaluation -----------------------------------------------------------------------------


def test_missing_fields_match_nothing() -> None:
    for text in ("nsb=1", "nsb!=1", "nsb<1", "nsb>=1", "nsb in (1)", "nsb nin (1)"):
        query = validate(text, CTA_SCHEMA)
        assert not matches(query, {"site": "x"}), text
        assert not matches(query, {"nsb": None}), text
    assert matches(MetaQuery(), {})


def test_matches_semantics() -> None:
    meta = {"nsb": 5, "thetaP": 20.0, "site": "LaPalma", "MCCampaign": "Prod6"}
    assert matches(parse_text("nsb=5 thetaP=20 site=LaPalma"), meta)
    assert matches(parse_text("nsb in (1,5) site nin (Paranal)"), meta)
    assert not matches(parse_text("nsb nin (1,5)"), meta)
    assert matches(parse_text("thetaP>10 thetaP<=20"), meta)  # a range on one field
    assert not matches(parse_text("thetaP>10 thetaP<20"), meta)
    assert matches(parse_text("MCCampaign>Prod10"), meta)  # strings: code-point order
    assert not matches(parse_text("site>5"), meta)  # incomparable types: no match
    assert not matches(parse_text("nsb='5'"), meta)  # not validated: "5" is not 5
    assert matches(validate("nsb='5'", CTA_SCHEMA), meta)
    assert not matches(parse_text("nsb=5"), {"nsb": [5]})
    assert not matches(parse_text("nsb=5"), {"nsb": True})


def test_effective_metadata_nearest_wins() -> None:
    chain = [{"MCCampaign": "Prod6", "site": "Paranal"}, {"site": "LaPalma", "particle": "p"}]
    own = {"particle": "gamma", "runNumber": 3}
    assert effective_metadata(chain, own) == {
        "MCCampaign": "Prod6", "site": "LaPalma", "particle": "gamma", "runNumber": 3
    }  # fmt: skip
    assert effective_metadata([], {}) == {}
    assert chain[0]["site"] == "Paranal"  # inputs untouched


def test_equality_keys_only_take_equalities() -> None:
    query = parse_text("a=1 b in (2) c>3 d!=4 e=x")
    assert equality_keys(query) == {"a": 1, "e": "x"}


# -- properties -----------------------------------------------------------------------------

_COMPARISONS = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_floats = st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(max_size=12).filter(lambda s: "\x00" not in s)
_VALUES: dict[FieldType, st.SearchStrategy[Any]] = {
    FieldType.INT: st.integers(min_value=-(2**63), max_value=2**63 - 1),
    FieldType.FLOAT: _floats,
    FieldType.STRING: _text,
    FieldType.DATETIME: st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))])
    ),
}


@given(
    st.sampled_from(sorted(_COMPARISONS)),
    st.one_of(st.tuples(st.integers(), st.integers()), st.tuples(_floats, _floats),
              st.tuples(_text, _text), st.tuples(st.integers(), _floats)),
)  # fmt: skip
def test_matches_equals_python_comparison(op: str, pair: tuple[Any, Any]) -> None:
    actual, bound = pair
    assert matches(_q(("x", op, bound)), {"x": actual}) is _COMPARISONS[op](actual, bound)


@given(st.integers(-5, 5), st.lists(st.integers(-5, 5), min_size=1, max_size=4))
def test_in_and_nin_are_membership(actual: int, values: list[int]) -> None:
    assert matches(_q(("x", "in", values)), {"x": actual}) is (actual in values)
    assert matches(_q(("x", "nin", values)), {"x": actual}) is (actual not in values)


@st.composite
def _queries(draw: st.DrawFn) -> tuple[MetaSchema, MetaQuery]:
    names = draw(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
                          min_size=1, max_size=4, unique=True))  # fmt: skip
    schema = MetaSchema({name: draw(st.sampled_from(list(FieldType))) for name in names})
    conditions = []
    for name, ftype in schema.fields.items():
        for op in draw(st.lists(st.sampled_from(list(Op)), min_size=1, max_size=3, unique=True)):
            if op in (Op.IN, Op.NIN):
                value = tuple(draw(st.lists(_VALUES[ftype], min_size=1, max_size=3)))
            else:
                value = draw(_VALUES[ftype])
            conditions.append(Condition(name, op, value))
    return schema, validate(MetaQuery(tuple(conditions)), schema)


@given(_queries())
def test_text_and_dict_forms_round_trip(case: tuple[MetaSchema, MetaQuery]) -> None:
    schema, query = case
    assert validate(to_text(query), schema) == query
    assert validate(to_dict(query), schema) == query
    assert validate(json.dumps(to_dict(query)), schema) == query
    if FieldType.DATETIME not in schema.fields.values():  # datetimes come back as text
        assert parse_text(to_text(query)) == query
        assert parse_mapping(to_dict(query)) == query


@given(st.text(max_size=30))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        query: MetaQuery | str = parse_text(text)
    except InvalidInput as error:
        query = error.message
    if isinstance(query, str):
        assert re.match(r"query syntax|invalid metadata|field |unknown op|metadata query", query)
    else:
        assert parse_text(to_text(query)) == query
