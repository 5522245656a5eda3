"""Users, groups, memberships and issued tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from ctaprod.db.tables import groups, tokens, user_groups, users


class AuthDB:
    def add_user(self, conn: Connection, name: str, email: str, now: datetime) -> None:
        conn.execute(insert(users).values(name=name, email=email, created=now, enabled=True))

    def user(self, conn: Connection, name: str) -> RowMapping | None:
        return conn.execute(select(users).where(users.c.name == name)).mappings().first()

    def users(self, conn: Connection) -> list[RowMapping]:
        return list(conn.execute(select(users).order_by(users.c.name)).mappings())

    def set_user_enabled(self, conn: Connection, name: str, enabled: bool) -> int:
        return conn.execute(
            update(users).where(users.c.name == name).values(enabled=enabled)
        ).rowcount

    def delete_user(self, conn: Connection, name: str) -> int:
        conn.execute(delete(user_groups).where(user_groups.c.user == name))
        return conn.execute(delete(users).where(users.c.name == name)).rowcount

    def add_group(
        self, conn: Connection, name: str, properties: Sequence[str], share: float, description: str
    ) -> None:
        conn.execute(
            insert(groups).values(
                name=name,
                properties=",".join(sorted(properties)),
                share=share,
                description=description,
            )
        )

    def update_group(self, conn: Connection, name: str, **values: Any) -> int:
        if "properties" in values:
            values["properties"] = ",".join(sorted(values["properties"]))
        return conn.execute(update(groups).where(groups.c.name == name).values(**values)).rowcount

    def group(self, conn: Connection, name: str) -> RowMapping | None:
        return conn.execute(select(groups).where(groups.c.name == name)).mappings().first()

    def groups(self, conn: Connection) -> list[RowMapping]:
        return list(conn.execute(select(groups).order_by(groups.c.name)).mappings())

    def shares(self, conn: Connection) -> dict[str, float]:
        return {r.name: float(r.share) for r in conn.execute(select(groups.c.name, groups.c.share))}

    def add_member(self, conn: Connection, user: str, group: str) -> None:
        conn.execute(insert(user_groups).values(user=user, group=group))

    def remove_member(self, conn: Connection, user: str, group: str) -> int:
        return conn.execute(
            delete(user_groups).where(user_groups.c.user == user, user_groups.c.group == group)
        ).rowcount

    def memberships(self, conn: Connection, user: str | None = None) -> list[tuple[str, str]]:
        stmt = select(user_groups.c.user, user_groups.c.group)
        if user is not None:
            stmt = stmt.where(user_groups.c.user == user)
        return [(r[0], r[1]) for r in conn.execute(stmt)]

    def lock_groups_with(self, conn: Connection, prop: str) -> list[RowMapping]:
        """The groups holding property ``prop``, row-locked until the transaction ends (on
        SQLite the write transaction is exclusive already): changes that could take the
        property from its last holder queue here, one after the other."""
        stmt = select(groups).order_by(groups.c.name).with_for_update()
        return [r for r in conn.execute(stmt).mappings() if prop in r["properties"].split(",")]

    def enabled_members(self, conn: Connection, group_names: Sequence[str]) -> set[str]:
        """The enabled users that are members of any of ``group_names``."""
        if not group_names:
            return set()
        stmt = (
            select(users.c.name)
            .join(user_groups, user_groups.c.user == users.c.name)
            .where(user_groups.c.group.in_(list(group_names)), users.c.enabled.is_(True))
        )
        return {str(r[0]) for r in conn.execute(stmt)}

    def active_owners(self, conn: Connection) -> frozenset[tuple[str, str]]:
        """(user, group) of every enabled user and each group they are a member of: whose
        jobs may still run (a job token is refused for any other owner)."""
        stmt = (
            select(user_groups.c.user, user_groups.c.group)
            .join(users, users.c.name == user_groups.c.user)
            .where(users.c.enabled.is_(True))
        )
        return frozenset((str(r[0]), str(r[1])) for r in conn.execute(stmt))

    def add_token(self, conn: Connection, row: Mapping[str, Any]) -> None:
        conn.execute(insert(tokens).values(**row))

    def token(self, conn: Connection, jti: str) -> RowMapping | None:
        return conn.execute(select(tokens).where(tokens.c.jti == jti)).mappings().first()

    def tokens(self, conn: Connection, user: str | None = None) -> list[RowMapping]:
        stmt = select(tokens).order_by(tokens.c.issued_at)
        if user is not None:
            stmt = stmt.where(tokens.c.user == user)
        return list(conn.execute(stmt).mappings())

    def revoke(self, conn: Connection, jti: str, now: datetime) -> int:
        return conn.execute(
            update(tokens)
            .where(tokens.c.jti == jti, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount

    def revoke_user(self, conn: Connection, user: str, now: datetime) -> int:
        return conn.execute(
            update(tokens)
            .where(tokens.c.user == user, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
