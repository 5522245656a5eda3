"""Home directories: made with the user, given to users made before them, the directories
above them owned by admin, and where jobs write by default."""

from __future__ import annotations

from typing import Any

import pytest

from ctaprod.core.errors import Forbidden
from ctaprod.logic import auth, catalog_access
from ctaprod.logic.homes import USER_ROOT, ensure_all_homes, home_dir
from ctaprod.pilot.data import default_output_dir
from tests.logic.conftest import user_identity


@pytest.fixture
def ctx(services: Any) -> Any:
    auth.bootstrap(services.ctx)
    return services.ctx


def owners(ctx: Any, *paths: str) -> dict[str, tuple[str, str]]:
    with ctx.db.read() as conn:
        rows = ctx.catalog.dirs_by_path(conn, paths)
    return {p: (r.owner, r.owner_group) for p, r in rows.items()}


def mkdirs(ctx: Any, user: str, group: str, directory: str) -> None:
    ident = user_identity(user, group)
    with ctx.db.write() as conn:
        catalog_access.ensure_dirs(ctx, conn, ident, {directory})


def test_home_layout_matches_the_default_output_dir() -> None:
    assert home_dir("alice") == "/ctao/user/a/alice"
    assert default_output_dir("alice", 17).startswith(home_dir("alice") + "/")


def test_add_user_makes_the_home(ctx: Any) -> None:
    auth.add_user(ctx, "alice", ["ctao_user"])
    auth.add_user(ctx, "anna", [])
    got = owners(ctx, "/ctao", USER_ROOT, "/ctao/user/a", home_dir("alice"), home_dir("anna"))
    assert got == {
        "/ctao": ("admin", "ctao_admin"),
        USER_ROOT: ("admin", "ctao_admin"),
        "/ctao/user/a": ("admin", "ctao_admin"),
        home_dir("alice"): ("alice", "ctao_user"),
        home_dir("anna"): ("anna", ""),
    }
    # alice's jobs (her identity) may write in her home, not in anna's nor next to them.
    mkdirs(ctx, "alice", "ctao_user", home_dir("alice") + "/42")
    with pytest.raises(Forbidden):
        mkdirs(ctx, "alice", "ctao_user", home_dir("anna") + "/42")
    with pytest.raises(Forbidden):
        mkdirs(ctx, "alice", "ctao_user", "/ctao/user/a/alice2")


def test_existing_users_get_theirs_and_the_first_writer_loses_the_user_root(ctx: Any) -> None:
    # As before homes: users made without one, and /ctao/user made by whoever wrote first.
    auth.add_group(ctx, "lst_users", ["NormalUser"], 1.0)
    with ctx.db.write() as conn:
        for name, group in (("bob", "lst_users"), ("bea", "ctao_user"), ("carl", "ctao_user")):
            ctx.auth.add_user(conn, name, "", ctx.clock())
            ctx.auth.add_member(conn, name, group)
    mkdirs(ctx, "bob", "lst_users", "/ctao/user/b/bob/run1")
    assert owners(ctx, USER_ROOT)[USER_ROOT] == ("bob", "lst_users")
    with pytest.raises(Forbidden):  # what users saw: bea cannot write her outputs
        mkdirs(ctx, "bea", "ctao_user", "/ctao/user/c/carl")

    made = ensure_all_homes(ctx)
    assert set(made) == {home_dir(u) for u in ("bea", "carl", "admin", "pilot")}
    got = owners(ctx, USER_ROOT, "/ctao/user/b", *(home_dir(u) for u in ("bob", "bea", "carl")))
    assert got == {
        USER_ROOT: ("admin", "ctao_admin"),
        "/ctao/user/b": ("admin", "ctao_admin"),
        home_dir("bob"): ("bob", "lst_users"),
        home_dir("bea"): ("bea", "ctao_user"),
        home_dir("carl"): ("carl", "ctao_user"),
    }
    mkdirs(ctx, "bea", "ctao_user", home_dir("bea") + "/7")
    assert ensure_all_homes(ctx) == []  # idempotent
