"""The production tables (db.productions) on the real test database: names are unique, steps
come back in creation order with their parents, the log in order, the validation outcome is
kept; transformations with an input limit take no more files than it (test mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from ctaprod.core.settings import Settings
from ctaprod.db.productions import NewStep
from tests.db.test_transformations_db import SE, _files, _transformation
from tests.dm_helpers import make_settings, posix_se


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        db_url, tmp_path, storage_elements={SE: posix_se(tmp_path / "se", "LOCAL.x.org")}
    )


@pytest.fixture
def ctx(services: Any) -> Any:
    return services.ctx


def _production(ctx: Any, name: str = "p") -> int:
    now = ctx.clock()
    row = {
        "name": name,
        "owner": "pm",
        "owner_group": "ctao_prod",
        "status": "New",
        "definition": "{}",
        "created": now,
        "last_update": now,
    }
    with ctx.db.write() as conn:
        return int(ctx.prods.insert(conn, row))


def test_a_name_is_unique(ctx: Any) -> None:
    _production(ctx, "same")
    with pytest.raises(IntegrityError):
        _production(ctx, "same")


def test_steps_log_and_validation(ctx: Any) -> None:
    pid = _production(ctx)
    t1, t2 = _transformation(ctx, "p.1"), _transformation(ctx, "p.2")
    now = ctx.clock()
    with ctx.db.write() as conn:
        ctx.prods.add_steps(
            conn, pid, [NewStep("2", "merge", 1, t2, ["1"]), NewStep("1", "", 0, t1)]
        )
        ctx.prods.add_log(conn, [(pid, "pm/ctao_prod", "submit", "a"), (pid, "x", "b", "c")], now)
        ctx.prods.set_fields(
            conn, pid, now, validation_status="Valid", validation_summary='{"ok": 1}',
            validated=now, validated_by="pm",
        )  # fmt: skip
    with ctx.db.read() as conn:
        steps = ctx.prods.steps(conn, [pid])[pid]
        assert [(s["step_id"], s["trans_id"], s["parents"]) for s in steps] == [
            ("1", t1, "[]"),
            ("2", t2, '["1"]'),
        ]
        assert [r["action"] for r in ctx.prods.log(conn, pid)] == ["submit", "b"]
        row = ctx.prods.get(conn, pid)
        assert (row["validation_status"], row["validated"]) == ("Valid", now)
        assert ctx.prods.by_name(conn, "p")["prod_id"] == pid
        assert ctx.prods.ids_in(conn, ["New"]) == [pid]
        assert list(ctx.prods.read_locked(conn, [pid])) == [pid]
        assert [r["prod_id"] for r in ctx.prods.search(conn, statuses=["New"])] == [pid]
        assert ctx.prods.job_counts(conn, t1) == {}
        assert ctx.prods.failure_counts(conn, t1) == {}
    with pytest.raises(IntegrityError), ctx.db.write() as conn:  # one step id per production
        ctx.prods.add_steps(conn, pid, [NewStep("1", "", 2, t1)])


def test_an_input_limit_caps_the_files_attached(ctx: Any) -> None:
    tid = _transformation(ctx)
    ids = _files(ctx, 6)
    now = ctx.clock()
    with ctx.db.write() as conn:
        ctx.trans.set_fields(conn, tid, now, input_limit=4)
        assert ctx.trans.attach(conn, tid, ids[:3], "Unused", now) == 3
    with ctx.db.write() as conn:
        # Already attached files do not count twice; one more fits.
        assert ctx.trans.attach_many(conn, [(tid, f) for f in ids], "Unused", now) == 1
        assert ctx.trans.attach(conn, tid, ids, "Unused", now) == 0
        assert ctx.trans.file_counts(conn, tid) == {"Unused": 4}
