"""Files reach transformations from catalog events (logic.trans_trigger) on the real test
database: registration, file and directory metadata changes, removal; exactly once across a
restart of the consumer; nothing missed when a creation races with registrations."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.identity import Identity
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.logic import catalog as C
from ctaprod.logic import metadata as M
from ctaprod.logic import transformations as T
from ctaprod.logic.trans_trigger import Trigger

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
BASE = "/ctao/MC/Prod6"


def definition(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "Processing",
        "input_query": query,
        "group_size": 1,
        "job_template": {"Executable": "x.sh"},
        "output_lfn_template": f"{BASE}/out/{{{{transformation_id}}}}/{{{{task_id}}}}.h5",
    }


@pytest.fixture
def ctx(services: Any) -> Any:
    for name, ftype in {"particle": "string", "zenith": "int", "site": "string"}.items():
        M.add_field(services.ctx, ADMIN, FieldDeclaration(name=name, type=ftype))
    return services.ctx


def register(ctx: Any, names: list[str], **meta: Any) -> list[int]:
    regs = [FileRegistration(lfn=n, size=1, checksum="1", metadata=meta) for n in names]
    return list(C.register_files(ctx, ADMIN, regs, verify=False))


def attached(ctx: Any, name: str) -> dict[str, str]:
    return {f.lfn: f.status for f in T.files(ctx, name)}


def test_registration_metadata_and_removal_reach_the_right_transformations(ctx: Any) -> None:
    T.create(ctx, ADMIN, definition("gammas", "particle=gamma"), start=True)
    T.create(ctx, ADMIN, definition("north20", "site=North zenith=20"))
    T.create(ctx, ADMIN, definition("any", "zenith>=0"))
    trigger = Trigger(ctx)
    assert trigger.run() == 0  # nothing happened since the creations
    register(ctx, [f"{BASE}/a/g1", f"{BASE}/a/g2"], particle="gamma", zenith=20)
    register(ctx, [f"{BASE}/a/p1"], particle="proton", zenith=40)
    assert trigger.run() == 3
    assert attached(ctx, "gammas") == {f"{BASE}/a/g1": "Unused", f"{BASE}/a/g2": "Unused"}
    assert attached(ctx, "north20") == {}
    assert set(attached(ctx, "any")) == {f"{BASE}/a/g1", f"{BASE}/a/g2", f"{BASE}/a/p1"}
    # A file's metadata changes: it now matches.
    M.set_metadata(ctx, ADMIN, f"{BASE}/a/p1", {"particle": "gamma"})
    # A directory's metadata changes: every file below it is tested again.
    M.set_metadata(ctx, ADMIN, f"{BASE}/a", {"site": "North"})
    assert trigger.run() == 2
    assert f"{BASE}/a/p1" in attached(ctx, "gammas")
    assert set(attached(ctx, "north20")) == {f"{BASE}/a/g1", f"{BASE}/a/g2"}
    # A file leaves the catalog: Removed everywhere it was.
    C.remove_file_entries(ctx, ADMIN, [f"{BASE}/a/g1"])
    assert trigger.run() >= 1
    for name in ("gammas", "north20", "any"):
        statuses = {f.file_id: f.status for f in T.files(ctx, name)}
        assert "Removed" in statuses.values(), name
    # Exactly once: a new consumer process (a new Trigger) starts where the last one ended.
    assert Trigger(ctx).run() == 0
    counts = T.get(ctx, "any").files
    assert counts == {"Unused": 2, "Removed": 1}


def test_a_creation_racing_with_registrations_misses_nothing(ctx: Any) -> None:
    """Files registered while transformations are created (with their bulk scan) are all
    attached once the events are consumed: none falls between the scan and the events."""
    register(ctx, [f"{BASE}/pre/f{i}" for i in range(50)], particle="gamma", zenith=20)
    names: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    trigger = Trigger(ctx)

    def registrar() -> None:
        try:
            for i in range(40):
                register(ctx, [f"{BASE}/race/f{i}"], particle="gamma", zenith=20)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def consumer() -> None:
        try:
            while not stop.is_set():
                trigger.run()
        except BaseException as exc:
            errors.append(exc)

    def creator() -> None:
        try:
            for i in range(5):
                T.create(ctx, ADMIN, definition(f"t{i}", "particle=gamma"), start=True)
                names.append(f"t{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (registrar, consumer, creator)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    trigger.run()
    for name in names:
        files = attached(ctx, name)
        assert len(files) == 90, (name, len(files))
        assert set(files.values()) == {"Unused"}


def test_a_file_registered_during_a_creation_scan_is_not_missed(ctx: Any) -> None:
    """The creation is held after its bulk scan while a file is registered and the consumer
    runs: the consumer must wait for the creation (the cursor lock), then attach the file.
    Without that order it would apply the event before the transformation exists."""
    if ctx.db.is_sqlite:
        pytest.skip("SQLite serializes the writers: the creation cannot be overtaken")
    from sqlalchemy import event

    scanned, proceed = threading.Event(), threading.Event()
    creator_thread: list[threading.Thread] = []

    def hold(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        mine = threading.current_thread() in creator_thread
        if mine and sql.startswith("INSERT INTO trans_log") and not scanned.is_set():
            scanned.set()
            proceed.wait(20)

    Trigger(ctx).run()  # the consumer exists
    errors: list[BaseException] = []

    def create() -> None:
        try:
            T.create(ctx, ADMIN, definition("late", "particle=gamma"), start=True)
        except BaseException as exc:
            errors.append(exc)

    event.listen(ctx.db.engine, "before_cursor_execute", hold)
    try:
        creator = threading.Thread(target=create)
        creator_thread.append(creator)
        creator.start()
        assert scanned.wait(20)
        register(ctx, [f"{BASE}/during/f0"], particle="gamma")
        consumer = threading.Thread(target=lambda: Trigger(ctx).run())
        consumer.start()
        consumer.join(1.0)  # it must be waiting for the creation
        waited = consumer.is_alive()
        proceed.set()
        creator.join(30)
        consumer.join(30)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", hold)
        proceed.set()
    assert errors == []
    assert waited
    Trigger(ctx).run()
    assert attached(ctx, "late") == {f"{BASE}/during/f0": "Unused"}


def test_a_large_directory_change_is_paged_outside_the_event_batch(
    ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More files below a directory than one page: the event batch only queues the scan;
    pages of their own attach the files, the progress kept until the scan is done."""
    from sqlalchemy import func, select

    from ctaprod.db.tables import trans_dir_scans
    from ctaprod.logic import events as E
    from ctaprod.logic import trans_trigger as TT

    monkeypatch.setattr(TT, "FILE_PAGE", 3)
    register(ctx, [f"{BASE}/big/sub{i % 2}/f{i}" for i in range(10)], zenith=20)
    T.create(ctx, ADMIN, definition("north", "site=North zenith=20"), start=True)
    trigger = Trigger(ctx)
    trigger.run()
    M.set_metadata(ctx, ADMIN, f"{BASE}/big", {"site": "North"})
    assert E.consume(ctx, TT.CONSUMER, trigger.apply) == 1  # the event alone
    assert attached(ctx, "north") == {}

    def queued() -> int:
        with ctx.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(trans_dir_scans)).scalar_one())

    assert queued() == 1
    assert trigger.scan_dirs(pages=2) == 6  # two pages of three, then stop
    assert len(attached(ctx, "north")) == 6
    assert queued() == 1
    trigger.run()  # idle on events: finishes the scan
    assert len(attached(ctx, "north")) == 10
    assert queued() == 0
