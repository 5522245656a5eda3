"""MetadataDB on a real database: the contract used by the catalog, propagation of
directory values through the tree (nearest wins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from ctaprod.core.metaquery import FieldType
from ctaprod.db.metadata import MetadataDB
from ctaprod.db.tables import dir_meta_eff
from tests.db.test_metadata_tree import NOW, Tree

TYPES = {
    "particle": FieldType.STRING,
    "thetaP": FieldType.FLOAT,
    "runNumber": FieldType.INT,
    "start": FieldType.DATETIME,
}


@pytest.fixture
def db(services: Any) -> Any:
    meta = MetadataDB()
    with services.ctx.db.write() as conn:
        for name, ftype in TYPES.items():
            meta.declare_field(conn, name, ftype, NOW)
    return services.ctx.db


def eff(conn: Any, dir_id: int) -> dict[str, Any]:
    _, values = MetadataDB().dir_values(conn, dir_id, TYPES)
    return values


def test_field_types_and_file_values(db: Any) -> None:
    meta, tree = MetadataDB(), Tree()
    when = datetime(2023, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)
    with db.write() as conn:
        # The production system's own field is declared when the services are built.
        assert meta.field_types(conn) == {**TYPES, "prod_step_id": FieldType.INT}
        f1, f2 = tree.add_files(conn, ["/p/f1", "/p/f2"])
        meta.add_file_values(
            conn,
            [(f1, {"runNumber": 7, "particle": "gamma", "start": when}), (f2, {"thetaP": 2.5})],
            TYPES,
        )
    with db.read() as conn:
        assert meta.file_values(conn, [f1, f2], TYPES) == {
            f1: {"runNumber": 7, "particle": "gamma", "start": when},
            f2: {"thetaP": 2.5},
        }
        assert meta.field_in_use(conn, "runNumber", FieldType.INT)
        assert meta.field_in_use(conn, "thetaP", FieldType.FLOAT)
    with db.write() as conn:
        meta.set_file_values(conn, [(f1, {"runNumber": 8})], TYPES)
        meta.delete_files(conn, [f2])
    with db.read() as conn:
        assert meta.file_values(conn, [f1, f2], TYPES)[f1]["runNumber"] == 8
        assert f2 not in meta.file_values(conn, [f1, f2], TYPES)


def test_directory_values_propagate_nearest_wins(db: Any) -> None:
    meta, tree = MetadataDB(), Tree()
    with db.write() as conn:
        for path in ["/a/b/c/d", "/a/x"]:
            tree.mkdir(conn, path)
        d = tree.dirs
        meta.set_dir_values(conn, d["/a/b"], {"particle": "proton"}, TYPES)
        meta.set_dir_values(conn, d["/a"], {"particle": "gamma", "thetaP": 20.0}, TYPES)
    with db.read() as conn:
        assert eff(conn, d["/a/x"]) == {"particle": ("gamma", d["/a"]), "thetaP": (20.0, d["/a"])}
        assert eff(conn, d["/a/b/c/d"])["particle"] == ("proton", d["/a/b"])
        assert eff(conn, d["/a/b/c/d"])["thetaP"] == (20.0, d["/a"])
        assert eff(conn, d["/"]) == {}
    with db.write() as conn:
        meta.unset_dir_values(conn, d["/a/b"], ["particle"])
    with db.read() as conn:
        assert eff(conn, d["/a/b/c/d"])["particle"] == ("gamma", d["/a"])
    with db.write() as conn:
        meta.unset_dir_values(conn, d["/a"], ["particle"])
    with db.read() as conn:
        assert "particle" not in eff(conn, d["/a/b/c/d"])


def test_inherit_dirs_copies_the_parent_chain(db: Any) -> None:
    meta, tree = MetadataDB(), Tree()
    with db.write() as conn:
        top = tree.mkdir(conn, "/t")
        meta.set_dir_values(conn, top, {"particle": "gamma"}, TYPES)
        # New directories, created by the catalog after the value was set: children
        # listed before their new parent still inherit through it.
        c1 = tree.mkdir(conn, "/t/u")
        c2 = tree.mkdir(conn, "/t/u/v")
        meta.inherit_dirs(conn, [(c2, c1), (c1, top)])
    with db.read() as conn:
        assert eff(conn, c2) == {"particle": ("gamma", top)}
    with db.write() as conn:
        meta.delete_dirs(conn, [c1, c2])
    with db.read() as conn:
        left = conn.execute(select(dir_meta_eff.c.dir_id)).scalars().all()
        assert left == [top]
