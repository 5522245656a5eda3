"""The transformation tables (db.transformations) on the real test database: attaching files
is idempotent also under concurrent attachers, tasks come back in order with their inputs,
agent replicas skip the tasks another one holds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.settings import Settings
from ctaprod.db.transformations import NewTask
from ctaprod.logic import catalog as C
from tests.dm_helpers import make_settings, posix_se
from tests.logic.conftest import user_identity

SE = "DISK-A"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        db_url, tmp_path, storage_elements={SE: posix_se(tmp_path / "se", "LOCAL.x.org")}
    )


@pytest.fixture
def ctx(services: Any) -> Any:
    return services.ctx


def _transformation(ctx: Any, name: str = "t1") -> int:
    now = ctx.clock()
    row = {
        "name": name,
        "type": "Processing",
        "status": "New",
        "owner": "pm",
        "owner_group": "ctao_prod",
        "input_query": "particle = 'gamma'",
        "plugin": "Standard",
        "group_size": 2,
        "max_errors": 3,
        "definition": "{}",
        "created": now,
        "last_update": now,
    }
    with ctx.db.write() as conn:
        return int(ctx.trans.insert(conn, row))


def _files(ctx: Any, n: int, size: int = 10) -> list[int]:
    alice = user_identity("alice")
    regs = [FileRegistration(lfn=f"/ctao/t/f{i}", size=size + i, checksum="1") for i in range(n)]
    return list(C.register_files(ctx, alice, regs, verify=False))


def test_a_name_is_unique(ctx: Any) -> None:
    _transformation(ctx, "same")
    with pytest.raises(IntegrityError):
        _transformation(ctx, "same")


def test_attach_is_idempotent_and_unused_comes_in_order(ctx: Any) -> None:
    tid = _transformation(ctx)
    ids = _files(ctx, 6)
    now = ctx.clock()
    with ctx.db.write() as conn:
        assert ctx.trans.attach(conn, tid, ids[:4], "Unused", now) == 4
    with ctx.db.write() as conn:
        assert ctx.trans.attach(conn, tid, ids, "Unused", now) == 2  # 4 were there
        assert ctx.trans.attach_many(conn, [(tid, f) for f in ids], "Unused", now) == 0
    with ctx.db.read() as conn:
        unused = ctx.trans.unused(conn, tid, "Unused", 100)
        assert [f for _, f, _ in unused] == ids
        assert [s for _, _, s in unused] == [10 + i for i in range(6)]
        assert ctx.trans.file_counts(conn, tid) == {"Unused": 6}


def test_concurrent_attachers_add_each_file_once(ctx: Any) -> None:
    tid = _transformation(ctx)
    ids = _files(ctx, 200)
    added: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def attach(part: list[int]) -> None:
        try:
            barrier.wait()
            for i in range(0, len(part), 20):
                with ctx.db.write() as conn:
                    added.append(
                        ctx.trans.attach(conn, tid, part[i : i + 20], "Unused", ctx.clock())
                    )
        except BaseException as exc:
            errors.append(exc)

    # Overlapping halves in different orders: every file is attached by two threads.
    parts = [ids[:150], ids[50:], list(reversed(ids[:150])), list(reversed(ids[50:]))]
    threads = [threading.Thread(target=attach, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(added) == 200
    with ctx.db.read() as conn:
        assert ctx.trans.file_counts(conn, tid) == {"Unused": 200}


def test_tasks_come_back_in_order_with_their_inputs(ctx: Any) -> None:
    tid = _transformation(ctx)
    ids = _files(ctx, 5)
    with ctx.db.write() as conn:
        tasks = ctx.trans.create_tasks(
            conn,
            tid,
            [NewTask(ids[:2]), NewTask(ids[2:4]), NewTask(ids[4:])],
            "Created",
            ctx.clock(),
        )
        mc = ctx.trans.create_tasks(
            conn, tid, [NewTask(run_number=r) for r in (1, 2)], "Created", ctx.clock()
        )
    assert tasks == sorted(tasks)
    assert len(set(tasks + mc)) == 5
    with ctx.db.read() as conn:
        inputs = ctx.trans.task_inputs(conn, tasks + mc)
        rows = ctx.trans.task_rows(conn, mc)
    assert inputs == {
        tasks[0]: ids[:2],
        tasks[1]: ids[2:4],
        tasks[2]: ids[4:],
        mc[0]: [],
        mc[1]: [],
    }
    assert [rows[t]["run_number"] for t in mc] == [1, 2]
    with pytest.raises(IntegrityError), ctx.db.write() as conn:  # a run number is made once
        ctx.trans.create_tasks(conn, tid, [NewTask(run_number=2)], "Created", ctx.clock())


def test_replicas_skip_the_tasks_another_holds(ctx: Any) -> None:
    if not ctx.trans.for_update:
        pytest.skip("SQLite serializes write transactions: nothing to skip")
    tid = _transformation(ctx)
    with ctx.db.write() as conn:
        tasks = ctx.trans.create_tasks(conn, tid, [NewTask()] * 4, "Created", ctx.clock())
    with ctx.db.write() as first:
        held = ctx.trans.task_ids(first, statuses=["Created"], limit=2, skip_locked=True)
        assert held == tasks[:2]
        with ctx.db.write() as second:
            rest = ctx.trans.task_ids(second, statuses=["Created"], skip_locked=True)
        assert rest == tasks[2:]
