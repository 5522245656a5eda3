"""A small catalog tree written with direct SQL (the catalog area is built in parallel);
shared by the metadata, query and dataset tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from ctaprod.db.tables import catalog_dirs, catalog_files

NOW = datetime(2024, 1, 1, tzinfo=UTC)


class Tree:
    """Directories and files inserted on demand: ``dirs[path]``, ``files[lfn]``."""

    def __init__(self, owner: str = "alice", group: str = "ctao_user") -> None:
        self.owner, self.group = owner, group
        self.dirs: dict[str, int] = {}
        self.files: dict[str, int] = {}

    def mkdir(self, conn: Connection, path: str, owner: str | None = None) -> int:
        """The dir_id of ``path``, created with its missing ancestors."""
        if path in self.dirs:
            return self.dirs[path]
        parent = None
        if path != "/":
            head = path.rsplit("/", 1)[0] or "/"
            parent = self.mkdir(conn, head, owner)
        conn.execute(
            insert(catalog_dirs).values(
                parent_id=parent,
                name=path.rsplit("/", 1)[-1],
                path=path,
                path_hash=hashlib.sha1(path.encode()).hexdigest(),
                owner=owner or self.owner,
                owner_group=self.group,
                created=NOW,
            )
        )
        dir_id = conn.execute(
            select(catalog_dirs.c.dir_id).where(catalog_dirs.c.path == path)
        ).scalar_one()
        self.dirs[path] = int(dir_id)
        return self.dirs[path]

    def add_files(self, conn: Connection, lfns: Iterable[str], size: int = 100) -> list[int]:
        ids = []
        for lfn in lfns:
            head, name = lfn.rsplit("/", 1)
            dir_id = self.mkdir(conn, head or "/")
            conn.execute(
                insert(catalog_files).values(
                    dir_id=dir_id, name=name, size=size, checksum="00000001",
                    guid=hashlib.md5(lfn.encode()).hexdigest(), owner=self.owner,
                    owner_group=self.group, created=NOW,
                )
            )  # fmt: skip
            file_id = conn.execute(
                select(catalog_files.c.file_id).where(
                    catalog_files.c.dir_id == dir_id, catalog_files.c.name == name
                )
            ).scalar_one()
            self.files[lfn] = int(file_id)
            ids.append(int(file_id))
        return ids


def test_tree_builds_ancestors(services) -> None:  # type: ignore[no-untyped-def]
    tree = Tree()
    with services.ctx.db.write() as conn:
        tree.add_files(conn, ["/a/b/f1", "/a/b/f2"])
    assert set(tree.dirs) == {"/", "/a", "/a/b"}
    assert len(set(tree.files.values())) == 2
