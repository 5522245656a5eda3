"""Queries driven by the ``(field, value, dir_id, file_id)`` index of file values: a file
equality within directories selected by directory keys, its pages across directories,
counts, frozen datasets, other file conditions on the candidates, and the directory id the
value rows carry."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from ctaprod.core.errors import InvalidInput, NotFound
from ctaprod.core.metadata import DatasetCreate, FieldDeclaration
from ctaprod.core.metaquery import FieldType
from ctaprod.db.tables import file_meta_int
from ctaprod.logic import datasets as D
from ctaprod.logic import metadata as M
from tests.db.test_metadata_tree import Tree
from tests.logic.test_metadata import ADMIN, ALICE, BASE, FIELDS, lfns

SITES = ("Paranal", "LaPalma")
CHUNKS = ("000xxx", "001xxx", "002xxx")


@pytest.fixture
def grid(ctx: Any) -> dict[str, dict[str, int]]:
    """2 sites x 2 particles x 3 chunk directories x 8 files; split = i % 4 on files,
    runNumber = i on files, thetaP on directories with one file overriding it.
    Returns lfn -> own file values."""
    tree = Tree()
    values: dict[str, dict[str, int]] = {}
    with ctx.db.write() as conn:
        for site in SITES:
            for particle in ("gamma", "proton"):
                for chunk in CHUNKS:
                    names = [f"{BASE}/{site}/{particle}/{chunk}/r{i}" for i in range(8)]
                    tree.add_files(conn, names)
                    values.update(
                        {n: {"split": i % 4, "runNumber": i} for i, n in enumerate(names)}
                    )
    M.set_metadata(ctx, ALICE, BASE, {"MCCampaign": "Prod6", "thetaP": 20})
    for site in SITES:
        M.set_metadata(ctx, ALICE, f"{BASE}/{site}", {"site": site})
        for particle in ("gamma", "proton"):
            M.set_metadata(ctx, ALICE, f"{BASE}/{site}/{particle}", {"particle": particle})
    # Bulk values through the db contract, without dir ids (looked up), then one file set
    # through the use case (dir id known).
    types = {"split": FieldType.INT, "runNumber": FieldType.INT}
    with ctx.db.write() as conn:
        rows = [(tree.files[lfn], v) for lfn, v in values.items()]
        ctx.meta.add_file_values(conn, rows, types)
    M.set_metadata(ctx, ALICE, f"{BASE}/Paranal/gamma/001xxx/r0", {"thetaP": 40.0})
    return values


@pytest.fixture
def ctx(services: Any) -> Any:
    for name, ftype in {**FIELDS, "split": "int"}.items():
        M.add_field(services.ctx, ADMIN, FieldDeclaration(name=name, type=ftype))
    return services.ctx


def expected(values: dict[str, dict[str, int]], prefix: str, **want: int) -> list[str]:
    return sorted(
        lfn
        for lfn, v in values.items()
        if lfn.startswith(prefix) and all(v[k] == x for k, x in want.items())
    )


def test_value_rows_carry_the_file_directory(ctx: Any, grid: Any) -> None:
    with ctx.db.read() as conn:
        rows = conn.execute(select(file_meta_int.c.file_id, file_meta_int.c.dir_id)).all()
        ids = [file_id for file_id, _ in rows]
        dirs = ctx.meta._dirs_of(conn, ids)
    assert rows
    assert all(dirs[file_id] == dir_id for file_id, dir_id in rows)


def test_unknown_file_id_is_a_clear_error(ctx: Any, grid: Any) -> None:
    with ctx.db.write() as conn, pytest.raises(NotFound, match="no catalog file with id"):
        ctx.meta.add_file_values(conn, [(10**9, {"split": 1})], {"split": FieldType.INT})


def test_file_equality_within_directories(ctx: Any, grid: Any) -> None:
    query = "site=Paranal particle=gamma split=0"
    want = expected(grid, f"{BASE}/Paranal/gamma/", split=0)
    assert len(want) == 6
    assert sorted(lfns(ctx, query)) == want
    # By directory, then registration order: r0 before r4 in each chunk.
    assert lfns(ctx, query) == want
    assert M.count_files(ctx, query).model_dump() == {"count": 6, "total_size": 600}
    # IN on the file key, and a second file condition tested on the candidates.
    both = lfns(ctx, "site=Paranal particle=gamma split in (1, 2) runNumber>=2")
    assert both == sorted(
        lfn
        for lfn, v in grid.items()
        if lfn.startswith(f"{BASE}/Paranal/gamma/") and v["split"] in (1, 2) and v["runNumber"] >= 2
    )
    # A scope instead of directory keys.
    assert lfns(ctx, "split=3", f"{BASE}/LaPalma/proton") == expected(
        grid, f"{BASE}/LaPalma/proton/", split=3
    )
    # Nothing in the selected directories, and no such directory.
    assert lfns(ctx, "site=Paranal split=7") == []
    assert M.count_files(ctx, "site=Nowhere split=0").count == 0


def test_driven_with_a_field_on_both_levels(ctx: Any, grid: Any) -> None:
    # thetaP is on directories and on one file (40): nearest wins on the candidates.
    gamma = f"{BASE}/Paranal/gamma/"
    assert lfns(ctx, "site=Paranal particle=gamma split=0 thetaP=20") == [
        lfn for lfn in expected(grid, gamma, split=0) if lfn != f"{gamma}001xxx/r0"
    ]
    assert lfns(ctx, "particle=gamma split=0 thetaP=40") == [f"{gamma}001xxx/r0"]


@pytest.mark.parametrize(
    "query", ["particle=gamma split=0", "split=1", "MCCampaign=Prod6 split in (0, 3)"]
)
@pytest.mark.parametrize("limit", [1, 2, 5, 100])
def test_pages_across_directories(ctx: Any, grid: Any, query: str, limit: int) -> None:
    seen, cursor = [], None
    while True:
        page = M.find_page(ctx, query, cursor=cursor, limit=limit)
        seen += page.lfns
        if page.next_cursor is None:
            break
        assert page.next_cursor.startswith("f")
        cursor = page.next_cursor
    assert seen == lfns(ctx, query)
    assert len(seen) == len(set(seen)) == M.count_files(ctx, query).count > 0


def test_cursor_of_another_plan_is_refused(ctx: Any, grid: Any) -> None:
    page = M.find_page(ctx, "site=Paranal", limit=2)
    assert page.next_cursor is not None
    assert page.next_cursor.startswith("d")
    with pytest.raises(InvalidInput, match="invalid cursor"):
        M.find_page(ctx, "site=Paranal split=0", cursor=page.next_cursor)
    with pytest.raises(InvalidInput, match="invalid cursor"):
        M.find_page(ctx, "site=Paranal split=0", cursor="f12/x")


def test_frozen_dataset_of_a_driven_query(ctx: Any, grid: Any) -> None:
    query = "site=LaPalma split=2"
    info = D.create_dataset(ctx, ALICE, DatasetCreate(name="lp2", query=query))
    frozen = D.freeze_dataset(ctx, ALICE, info.name)
    assert frozen.file_count == len(expected(grid, f"{BASE}/LaPalma/", split=2)) == 12
    assert frozen.total_size == 1200


def test_check_values_with_types_read_once(ctx: Any) -> None:
    types = {"split": FieldType.INT, "extra": FieldType.FLOAT}  # as a caller read them
    with ctx.db.read() as conn:
        assert M.check_values(ctx, conn, {"split": "3", "extra": 1}, types=types) == {
            "split": 3,
            "extra": 1.0,
        }
        assert M.check_values(ctx, conn, {"split": "3"}) == {"split": 3}
        with pytest.raises(InvalidInput, match="'runNumber' is not declared"):
            M.check_values(ctx, conn, {"runNumber": 1}, types=types)


@pytest.mark.parametrize("query", ["MCCampaign=Prod6", "MCCampaign=Prod6 split=1"])
def test_pages_across_directory_chunks(ctx: Any, grid: Any, query: str, monkeypatch: Any) -> None:
    whole = lfns(ctx, query)
    monkeypatch.setattr(M, "DIR_CHUNK", 2)  # several IN lists of directory ids per page
    assert lfns(ctx, query) == whole
    seen, cursor = [], None
    while True:
        page = M.find_page(ctx, query, cursor=cursor, limit=7)
        seen += page.lfns
        if (cursor := page.next_cursor) is None:
            break
    assert seen == whole
    assert len(whole) == M.count_files(ctx, query).count > 0
