"""core.trans_index: the index finds exactly the transformations a brute-force evaluation of
every query finds, while evaluating only a few of them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ctaprod.core.metaquery import Condition, MetaQuery, Op, matches, parse
from ctaprod.core.trans_index import QueryIndex

FIELDS = {
    "particle": ["gamma", "proton", "electron", "nsb"],
    "site": ["North", "South"],
    "zenith": [20, 40, 60],
    "run": [1, 2, 3, 4, 5],
    "level": [-1, 0, 1, 2],
}


@st.composite
def conditions(draw: Any) -> Condition:
    field = draw(st.sampled_from(sorted(FIELDS)))
    values = FIELDS[field]
    op = draw(st.sampled_from([Op.EQ, Op.NE, Op.IN, Op.NIN, Op.LT, Op.GE]))
    if op in (Op.LT, Op.GE) and isinstance(values[0], str):
        op = Op.EQ
    if op in (Op.IN, Op.NIN):
        return Condition(field, op, tuple(draw(st.sets(st.sampled_from(values), min_size=1))))
    return Condition(field, op, draw(st.sampled_from(values)))


@st.composite
def queries(draw: Any) -> MetaQuery:
    conds = draw(st.lists(conditions(), max_size=4))
    unique: dict[tuple[str, Op], Condition] = {}
    for c in conds:
        unique.setdefault((c.field, c.op), c)
    return MetaQuery(tuple(unique.values()))


metadatas = st.fixed_dictionaries({}, optional={f: st.sampled_from(v) for f, v in FIELDS.items()})


@settings(max_examples=200, deadline=None)
@given(st.lists(queries(), min_size=1, max_size=40), st.lists(metadatas, min_size=1, max_size=20))
def test_the_index_agrees_with_brute_force(
    qs: list[MetaQuery], files: list[dict[str, Any]]
) -> None:
    index = QueryIndex(dict(enumerate(qs)))
    for meta in files:
        expected = [t for t, q in enumerate(qs) if matches(q, meta)]
        assert index.matching(meta) == expected
        assert set(expected) <= index.candidates(meta)


def test_a_file_is_tested_against_few_of_many_queries() -> None:
    qs = {}
    tid = 0
    for particle in FIELDS["particle"]:
        for site in FIELDS["site"]:
            for zenith in FIELDS["zenith"]:
                for level in FIELDS["level"]:
                    qs[tid] = parse(
                        f"MCCampaign = 'Prod6' and particle = '{particle}' and site = '{site}'"
                        f" and zenith = {zenith} and level = {level}"
                    )
                    tid += 1
    qs[tid] = parse("run > 3")  # no equality condition: always tested
    index = QueryIndex(qs)
    meta = {"MCCampaign": "Prod6", "particle": "gamma", "site": "North", "zenith": 20, "level": 0}
    # 97 queries, all with MCCampaign = 'Prod6': the index files them under rarer keys.
    assert len(index.candidates(meta)) <= 1 + len(qs) // 4
    assert index.unindexed == frozenset({tid})
    [hit] = index.matching(meta)
    assert qs[hit] == parse(
        "MCCampaign = 'Prod6' and particle = 'gamma' and site = 'North' and zenith = 20"
        " and level = 0"
    )
    assert index.matching({**meta, "run": 5}) == [hit, tid]


def test_using_names_the_queries_that_read_a_field() -> None:
    index = QueryIndex(
        {1: parse("particle = 'gamma'"), 2: parse("site in (North) and run > 2"), 3: MetaQuery()}
    )
    assert index.using(["run"]) == {2}
    assert index.using(["particle", "site"]) == {1, 2}
    assert index.using(["other"]) == set()
    assert index.matching({}) == [3]  # the empty query takes every file
