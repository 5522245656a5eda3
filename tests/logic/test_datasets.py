"""Datasets on a real database: create, list, show, files, freeze, delete, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from ctaprod.core.metadata import DatasetCreate, DatasetStatus
from ctaprod.core.metaquery import parse
from ctaprod.logic import datasets as D
from ctaprod.logic import metadata as M
from tests.db.test_metadata_tree import Tree
from tests.logic.test_metadata import ADMIN, ALICE, BASE, EVE, ctx, tree

__all__ = ["ctx", "tree"]  # fixtures shared with the metadata tests


def test_dynamic_and_frozen(ctx: Any, tree: Tree) -> None:
    dyn = D.create_dataset(ctx, ALICE, DatasetCreate(name="gammas", query="particle=gamma"))
    assert dyn.status is DatasetStatus.DYNAMIC
    assert dyn.owner == "alice"
    frozen = D.create_dataset(
        ctx, ALICE, DatasetCreate(name="g-frozen", query={"particle": "gamma"}, frozen=True)
    )
    assert frozen.status is DatasetStatus.FROZEN
    assert (frozen.file_count, frozen.total_size) == (6, 600)
    assert D.dataset_query(ctx, "gammas") == parse("particle=gamma")
    # More gamma files: the dynamic dataset sees them, the frozen one does not.
    with ctx.db.write() as conn:
        tree.add_files(conn, [f"{BASE}/Paranal/gamma/f9"])
    shown = D.show_dataset(ctx, "gammas")
    assert (shown.file_count, shown.total_size) == (7, 700)
    assert len(list(D.iter_dataset_lfns(ctx, "gammas"))) == 7
    assert sorted(D.iter_dataset_lfns(ctx, "g-frozen")) == sorted(
        f"{BASE}/{site}/gamma/f{i}" for site in ("Paranal", "LaPalma") for i in range(3)
    )
    assert D.show_dataset(ctx, "g-frozen").file_count == 6
    assert [d.name for d in D.list_datasets(ctx)] == ["g-frozen", "gammas"]
    later = D.freeze_dataset(ctx, ALICE, "gammas")
    assert later.file_count == 7
    assert later.frozen_at is not None


def test_freeze_driven_by_file_index(ctx: Any, tree: Tree) -> None:
    info = D.create_dataset(ctx, ALICE, DatasetCreate(name="run0", query="runNumber=0"))
    assert D.freeze_dataset(ctx, ALICE, info.name).file_count == 4


def test_bad_input_and_permissions(ctx: Any, tree: Tree) -> None:
    D.create_dataset(ctx, ALICE, DatasetCreate(name="ds1", query="site=Paranal"))
    with pytest.raises(Conflict, match="'ds1' is already used"):
        D.create_dataset(ctx, EVE, DatasetCreate(name="ds1", query="site=LaPalma"))
    with pytest.raises(InvalidInput, match="did you mean 'site'"):
        D.create_dataset(ctx, ALICE, DatasetCreate(name="ds2", query="sitte=Paranal"))
    with pytest.raises(InvalidInput, match="invalid dataset name"):
        DatasetCreate(name="bad name", query="site=Paranal")
    with pytest.raises(NotFound):
        D.show_dataset(ctx, "nope")
    with pytest.raises(NotFound):
        D.iter_dataset_lfns(ctx, "nope")
    with pytest.raises(Forbidden, match="only alice"):
        D.freeze_dataset(ctx, EVE, "ds1")
    with pytest.raises(Forbidden):
        D.delete_dataset(ctx, EVE, "ds1")
    D.freeze_dataset(ctx, ADMIN, "ds1")
    with pytest.raises(Conflict, match="already frozen"):
        D.freeze_dataset(ctx, ALICE, "ds1")
    D.delete_dataset(ctx, ALICE, "ds1")
    assert D.list_datasets(ctx) == []
    assert M.count_files(ctx, "site=Paranal").count == 6
