"""Job-ID ranges in and out, and status counts."""

from __future__ import annotations

import pytest
import typer

from ctaprod.cli.common import parse_ids
from ctaprod.cli.output import compact_ids, count_by_status


@pytest.mark.parametrize(
    ("ids", "text"),
    [
        ([], ""),
        ([7], "7"),
        ([1, 2, 3], "1-3"),
        ([5, 1, 2, 3, 9, 8, 3], "1-3,5,8-9"),
        (list(range(1, 201)), "1-200"),
    ],
)
def test_compact_ids(ids: list[int], text: str) -> None:
    assert compact_ids(ids) == text


def test_parse_ids() -> None:
    assert parse_ids(["10-12", "3", "1,2, 11"]) == [10, 11, 12, 3, 1, 2]
    assert parse_ids([compact_ids(range(1, 1001))]) == list(range(1, 1001))


@pytest.mark.parametrize("bad", ["abc", "0", "5-3", "1-", "-", "1-2-3", ","])
def test_parse_ids_refuses(bad: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_ids([bad])


def test_count_by_status_follows_the_state_machine() -> None:
    counts = count_by_status(["Failed", "Done", "Waiting", "Done", "Odd"])
    assert counts == "1 Waiting, 2 Done, 1 Failed, 1 Odd"
