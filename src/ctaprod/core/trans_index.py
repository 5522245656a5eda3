"""Which transformations can take a file: the input queries of the active transformations,
compiled once and indexed by one equality key each.

A new or changed file must be tested against the transformations whose input query it may
satisfy, at thousands of active transformations and files arriving by the thousand. Every
query is an AND of conditions, so a file can only match a query if it satisfies each of its
``=`` / ``in`` conditions: each query is filed under one of them (``field = value``, or one
bucket per value of an ``in`` list), and a file is looked up in the buckets of its own
values: only the queries found there, plus those with no equality condition at all, are
evaluated. Among a query's equality conditions, a single value beats a list, then the field
whose values vary most across all the queries wins, so that a key every query shares
(``MCCampaign = 'Prod6'``) does not gather them all in one bucket while a varied one
(``particle``, ``runNumber``) splits them.

Metadata-change events name the fields that changed: :meth:`QueryIndex.using` gives the
transformations whose query reads any of them, the only ones a change can make match.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from ctaprod.core.metaquery import Condition, MetaQuery, Op, matches

Bucket = tuple[str, Any]


def _options(query: MetaQuery) -> list[Condition]:
    return [
        c
        for c in query.conditions
        if c.op is Op.EQ or (c.op is Op.IN and isinstance(c.value, tuple) and c.value)
    ]


def _buckets(cond: Condition) -> list[Bucket]:
    values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
    # 5 and 5.0 compare and hash alike in Python: an int field's bucket takes either.
    return [(cond.field, v) for v in values]


class QueryIndex:
    """The input queries of a set of transformations (id -> query), indexed."""

    def __init__(self, queries: Mapping[int, MetaQuery]) -> None:
        self.queries = dict(queries)
        self._by_bucket: dict[Bucket, set[int]] = defaultdict(set)
        self._always: set[int] = set()
        self._by_field: dict[str, set[int]] = defaultdict(set)
        # How selective each field is across these queries: the more distinct values its
        # equality conditions take, the fewer queries share one of its buckets.
        distinct: dict[str, set[Any]] = defaultdict(set)
        for query in self.queries.values():
            for cond in _options(query):
                distinct[cond.field].update(v for _, v in _buckets(cond))
        for tid in sorted(self.queries):
            query = self.queries[tid]
            for field in query.fields:
                self._by_field[field].add(tid)
            options = _options(query)
            if not options:
                self._always.add(tid)
                continue
            best = min(
                options,
                key=lambda c: (
                    len(_buckets(c)),  # an 'in' list costs one bucket per value
                    -len(distinct[c.field]),
                    c.field,
                ),
            )
            for bucket in _buckets(best):
                self._by_bucket[bucket].add(tid)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def unindexed(self) -> frozenset[int]:
        """Transformations tested against every file (no ``=`` or ``in`` condition)."""
        return frozenset(self._always)

    def candidates(self, metadata: Mapping[str, Any]) -> set[int]:
        """The transformations whose query this metadata may satisfy (a superset)."""
        found = set(self._always)
        for field, value in metadata.items():
            if value is None:
                continue
            try:
                hit = self._by_bucket.get((field, value))
            except TypeError:  # an unhashable value: it cannot be in an equality bucket
                continue
            if hit:
                found |= hit
        return found

    def matching(
        self, metadata: Mapping[str, Any], among: Iterable[int] | None = None
    ) -> list[int]:
        """The transformations (sorted) whose query this (effective) metadata satisfies;
        with ``among``, only those of them."""
        found = self.candidates(metadata)
        if among is not None:
            found &= set(among)
        return sorted(t for t in found if matches(self.queries[t], metadata))

    def using(self, fields: Iterable[str]) -> set[int]:
        """The transformations whose query reads any of ``fields``."""
        out: set[int] = set()
        for field in fields:
            out |= self._by_field.get(field, set())
        return out
