"""Grouping plugins (ctaprod.core.grouping): examples, then properties over random inputs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctaprod.core.errors import InvalidInput
from ctaprod.core.grouping import (
    PLUGINS,
    GroupFile,
    Grouping,
    GroupingPlugin,
    PluginRegistry,
    by_metadata,
    by_size,
    standard,
)


def files(n: int, size: int = 10, **meta: object) -> list[GroupFile]:
    return [GroupFile(i, f"/d/f{i}", size, dict(meta)) for i in range(1, n + 1)]


def ids(result: Grouping) -> tuple[list[list[int]], list[int]]:
    return [[f.file_id for f in g] for g in result.groups], [f.file_id for f in result.leftovers]


def test_standard_groups_and_leftovers() -> None:
    assert ids(standard(files(7), 3)) == ([[1, 2, 3], [4, 5, 6]], [7])
    assert ids(standard(files(7), 3, flush=True)) == ([[1, 2, 3], [4, 5, 6], [7]], [])
    assert ids(standard(files(6), 3)) == ([[1, 2, 3], [4, 5, 6]], [])
    assert ids(standard([], 3, flush=True)) == ([], [])
    assert ids(standard(files(2), 1)) == ([[1], [2]], [])


def test_order_is_by_file_id_whatever_the_input_order() -> None:
    items = files(10)
    shuffled = items[:]
    random.Random(4).shuffle(shuffled)
    for name in PLUGINS.names():
        plugin = PLUGINS.get(name)
        size = 25 if plugin.unit == "bytes" else 1 if name == "Broadcast" else 3
        keys = ("k",) if plugin.needs_keys else ()
        assert plugin(shuffled, size, keys=keys) == plugin(items, size, keys=keys)


def test_a_file_given_twice_is_a_bug() -> None:
    with pytest.raises(ValueError, match="given twice"):
        standard([*files(2), GroupFile(2, "/d/again")], 2)


def test_by_size() -> None:
    sizes = [4, 4, 4, 15, 1, 9, 2]
    items = [GroupFile(i, f"/f{i}", s) for i, s in enumerate(sizes, 1)]
    # 4+4 then 4 does not fit in 10; 15 alone; 1+9 is exactly full; 2 waits.
    assert ids(by_size(items, 10)) == ([[1, 2], [3], [4], [5, 6]], [7])
    assert ids(by_size(items, 10, flush=True)) == ([[1, 2], [3], [4], [5, 6], [7]], [])


def test_by_size_empty_files_wait_for_more() -> None:
    items = [GroupFile(i, f"/f{i}", 0) for i in range(1, 4)]
    assert ids(by_size(items, 10)) == ([], [1, 2, 3])
    assert ids(by_size(items, 10, flush=True)) == ([[1, 2, 3]], [])


def test_by_metadata() -> None:
    items = [
        GroupFile(1, "/a", 1, {"run": 1, "p": "g"}),
        GroupFile(2, "/b", 1, {"run": 2, "p": "g"}),
        GroupFile(3, "/c", 1, {"run": 1, "p": "g"}),
        GroupFile(4, "/d", 1, {"run": 1, "p": "e"}),
        GroupFile(5, "/e", 1, {"p": "g"}),  # no run: a value of its own
        GroupFile(6, "/f", 1, {"run": 2, "p": "g"}),
        GroupFile(7, "/g", 1, {"p": "g"}),
        GroupFile(8, "/h", 1, {"run": 1, "p": "g"}),
    ]
    assert ids(by_metadata(items, 2, keys=["run", "p"])) == (
        [[1, 3], [2, 6], [5, 7]],
        [4, 8],
    )
    assert ids(by_metadata(items, 2, keys=["run", "p"], flush=True)) == (
        [[1, 3], [2, 6], [4], [5, 7], [8]],
        [],
    )
    # 1 and "1" are different values.
    typed = [GroupFile(1, "/a", 0, {"run": 1}), GroupFile(2, "/b", 0, {"run": "1"})]
    assert ids(by_metadata(typed, 2, keys=["run"], flush=True)) == ([[1], [2]], [])
    with pytest.raises(ValueError, match="keys"):
        by_metadata(items, 2)


def test_broadcast() -> None:
    assert ids(PLUGINS.get("Broadcast")(files(3), 1)) == ([[1], [2], [3]], [])


def test_group_size_ranges() -> None:
    with pytest.raises(InvalidInput, match="out of range for the Standard plugin") as info:
        PLUGINS.get("Standard").check_size(0)
    assert info.value.detail["key"] == "group_size"
    with pytest.raises(InvalidInput, match="from 1 to 10000 files"):
        PLUGINS.get("Standard").check_size(10_001)
    with pytest.raises(InvalidInput, match="exactly 1 files"):
        PLUGINS.get("Broadcast").check_size(2)
    with pytest.raises(InvalidInput, match="needs a group size"):
        PLUGINS.get("BySize").check_size(None)
    assert PLUGINS.get("Standard").check_size(None) == 1
    assert PLUGINS.get("bysize").check_size(10**12) == 10**12


def test_registry() -> None:
    assert PLUGINS.names() == ["Broadcast", "ByMetadata", "BySize", "Standard"]
    with pytest.raises(InvalidInput, match="unknown grouping plugin 'Bysise'") as info:
        PLUGINS.get("Bysise")
    assert info.value.detail["key"] == "plugin"
    registry = PluginRegistry([GroupingPlugin("Pairs", standard, min_size=2, max_size=2)])
    assert "pairs" in registry
    assert ids(registry.get("Pairs")(files(5), 2)) == ([[1, 2], [3, 4]], [5])
    with pytest.raises(ValueError, match="registered already"):
        registry.register(GroupingPlugin("PAIRS", standard))


# --- properties ------------------------------------------------------------------------------

records = st.lists(
    st.builds(
        lambda i, size, a, b: GroupFile(i, f"/d/{i}", size, {"a": a, "b": b}),
        st.integers(0, 10_000),
        st.integers(0, 3_000),
        st.sampled_from([1, 2, "x", None]),
        st.sampled_from(["u", "v"]),
    ),
    max_size=60,
    unique_by=lambda f: f.file_id,
)


def _check(result: Grouping, given_files: list[GroupFile], flush: bool) -> None:
    placed = [f.file_id for g in result.groups for f in g] + [f.file_id for f in result.leftovers]
    assert sorted(placed) == sorted(f.file_id for f in given_files)  # all of them, once each
    assert len(placed) == len(set(placed))
    assert all(result.groups)  # no empty group
    for group in result.groups:
        assert [f.file_id for f in group] == sorted(f.file_id for f in group)
    if flush:
        assert result.leftovers == []


@settings(max_examples=200, deadline=None)
@given(records, st.integers(1, 12), st.booleans())
def test_standard_properties(items: list[GroupFile], size: int, flush: bool) -> None:
    result = standard(items, size, flush=flush)
    _check(result, items, flush)
    assert all(len(g) == size for g in result.groups[:-1])
    assert all(len(g) <= size for g in result.groups)
    assert len(result.leftovers) < size
    if not flush:
        assert all(len(g) == size for g in result.groups)


@settings(max_examples=200, deadline=None)
@given(records, st.integers(1, 5_000), st.booleans())
def test_by_size_properties(items: list[GroupFile], size: int, flush: bool) -> None:
    result = by_size(items, size, flush=flush)
    _check(result, items, flush)
    for group in result.groups:
        total = sum(f.size for f in group)
        assert total <= size or len(group) == 1  # only a lone file may be larger
    assert sum(f.size for f in result.leftovers) < size
    ordered = [f.file_id for g in result.groups for f in g] + [f.file_id for f in result.leftovers]
    assert ordered == sorted(ordered)  # files stay in order across groups


@settings(max_examples=200, deadline=None)
@given(records, st.integers(1, 6), st.booleans())
def test_by_metadata_properties(items: list[GroupFile], size: int, flush: bool) -> None:
    result = by_metadata(items, size, flush=flush, keys=["a", "b"])
    _check(result, items, flush)
    for group in result.groups:
        assert len(group) <= size
        values = {(repr(f.metadata.get("a")), f.metadata.get("b")) for f in group}
        assert len(values) == 1
    leftover_keys = [(repr(f.metadata.get("a")), f.metadata.get("b")) for f in result.leftovers]
    counts = {k: leftover_keys.count(k) for k in leftover_keys}
    assert all(c < size for c in counts.values())


@settings(max_examples=100, deadline=None)
@given(records)
def test_broadcast_properties(items: list[GroupFile]) -> None:
    result = PLUGINS.get("Broadcast")(items, 1, flush=False)
    _check(result, items, True)
    assert all(len(g) == 1 for g in result.groups)
