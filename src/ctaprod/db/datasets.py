"""Datasets: named metadata queries, dynamic or frozen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, delete, func, insert, literal, select, update
from sqlalchemy.sql import Select

from ctaprod.db.tables import catalog_dirs, catalog_files, dataset_files, datasets


class DatasetDB:
    """Datasets and the file lists of frozen ones. Methods never commit."""

    def create(
        self,
        conn: Connection,
        *,
        name: str,
        owner: str,
        owner_group: str,
        query: str,
        description: str,
        now: datetime,
    ) -> int:
        """Insert a dynamic dataset; its id (IntegrityError if the name is taken)."""
        conn.execute(
            insert(datasets).values(
                name=name, owner=owner, owner_group=owner_group, query=query,
                description=description, created=now, status="Dynamic",
            )
        )  # fmt: skip
        return int(
            conn.execute(select(datasets.c.dataset_id).where(datasets.c.name == name)).scalar_one()
        )

    def get(self, conn: Connection, name: str) -> Any:
        """The row of dataset ``name`` or None."""
        return conn.execute(select(datasets).where(datasets.c.name == name)).first()

    def all(self, conn: Connection) -> list[Any]:
        return list(conn.execute(select(datasets).order_by(datasets.c.name)))

    def delete(self, conn: Connection, dataset_id: int) -> None:
        conn.execute(delete(dataset_files).where(dataset_files.c.dataset_id == dataset_id))
        conn.execute(delete(datasets).where(datasets.c.dataset_id == dataset_id))

    def add_files_from(self, conn: Connection, dataset_id: int, file_ids: Select[Any]) -> None:
        """Copy the file ids a SELECT returns into the dataset's list, in one statement."""
        sub = file_ids.subquery()
        conn.execute(
            insert(dataset_files).from_select(
                ["dataset_id", "file_id"],
                select(literal(dataset_id, BigInteger), sub.c.file_id),
            )
        )

    def freeze(self, conn: Connection, dataset_id: int, now: datetime) -> bool:
        """Mark a dynamic dataset frozen with the count and size of its stored files;
        False if it was not dynamic (a concurrent freeze)."""
        f, df = catalog_files, dataset_files
        count, size = conn.execute(
            select(func.count(), func.coalesce(func.sum(f.c.size), 0))
            .select_from(df.join(f, f.c.file_id == df.c.file_id))
            .where(df.c.dataset_id == dataset_id)
        ).one()
        done = conn.execute(
            update(datasets)
            .where(datasets.c.dataset_id == dataset_id, datasets.c.status == "Dynamic")
            .values(status="Frozen", frozen_at=now, file_count=count, total_size=size)
        )
        return done.rowcount == 1

    def files_page(
        self, conn: Connection, dataset_id: int, after: int | None, limit: int
    ) -> list[Any]:
        """(file_id, path, name, size) of stored files still in the catalog, by file_id."""
        f, d, df = catalog_files, catalog_dirs, dataset_files
        query = (
            select(f.c.file_id, d.c.path, f.c.name, f.c.size)
            .select_from(df.join(f, f.c.file_id == df.c.file_id).join(d, d.c.dir_id == f.c.dir_id))
            .where(df.c.dataset_id == dataset_id)
        )
        if after is not None:
            query = query.where(df.c.file_id > after)
        return list(conn.execute(query.order_by(df.c.file_id).limit(limit)))
