"""The catalog event outbox on the real test database: kinds and fields written by the
catalog and metadata use cases, late sequencing (an event committed late is not skipped),
durable cursors (exactly once across SIGKILL and replicas), pruning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, func, insert, select

from ctaprod.core.catalog import FileRegistration, ReplicaRef
from ctaprod.core.errors import InvalidInput, NotFound
from ctaprod.core.events import Event, EventKind, NewEvent
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.metaquery import FieldType
from ctaprod.core.settings import Settings
from ctaprod.db.engine import Database
from ctaprod.db.tables import catalog_events, event_sequencer
from ctaprod.logic import catalog as C
from ctaprod.logic import events as E
from ctaprod.logic import metadata as M
from tests.dm_helpers import make_settings, posix_se
from tests.logic.conftest import user_identity

SE, SE2 = "DISK-A", "DISK-B"
ADMIN = user_identity("root", "admin", frozenset({"Admin"}))

# Each test event carries a unique file_id; the handler records it under a primary key, so
# applying an event twice fails the handler's transaction and shows in the counts.
applied_meta = MetaData()
applied = Table(
    "test_applied_events",
    applied_meta,
    Column("file_id", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("pid", BigInteger, nullable=False),
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    ses = {SE: posix_se(tmp_path / "se-a"), SE2: posix_se(tmp_path / "se-b")}
    return make_settings(db_url, tmp_path, storage_elements=ses)


@pytest.fixture
def ctx(services: Any) -> Any:
    return services.ctx


@pytest.fixture
def applied_table(ctx: Any) -> Iterator[Table]:
    """The handlers' table, dropped afterwards (the session schema must stay tables.py's)."""
    applied_meta.drop_all(ctx.db.engine)
    applied_meta.create_all(ctx.db.engine)
    yield applied
    applied_meta.drop_all(ctx.db.engine)


def record(conn: Connection, events: Sequence[Event]) -> None:
    """The test consumer: one row per event, keyed by the event's file_id."""
    rows = [{"file_id": ev.file_id, "seq": ev.seq, "pid": os.getpid()} for ev in events]
    conn.execute(insert(applied), rows)


def write_events(ctx: Any, file_ids: Sequence[int]) -> None:
    with ctx.db.write() as conn:
        ctx.events.add(conn, [NewEvent(EventKind.FILE_REGISTERED, f, 1) for f in file_ids], NOW())


def NOW() -> Any:
    from ctaprod.db.types import utcnow

    return utcnow()


def drain(ctx: Any, consumer: str, handler: E.Handler, limit: int = 1000) -> list[Event]:
    got: list[Event] = []

    def keep(conn: Connection, events: Sequence[Event]) -> None:
        handler(conn, events)
        got.extend(events)

    while E.consume(ctx, consumer, keep, limit=limit):
        pass
    return got


def applied_ids(ctx: Any) -> list[int]:
    with ctx.db.read() as conn:
        return sorted(conn.execute(select(applied.c.file_id)).scalars())


# --- kinds and fields, through the use cases ---------------------------------------------------
def test_use_cases_write_the_right_kinds_and_fields(ctx: Any) -> None:
    alice = user_identity("alice", "ctao_user")
    for name, ftype in (("run", FieldType.INT), ("site", FieldType.STRING)):
        M.add_field(ctx, ADMIN, FieldDeclaration(name=name, type=ftype))
    E.register_consumer(ctx, "t")

    def reg(lfn: str, se: str, **kw: Any) -> FileRegistration:
        return FileRegistration(lfn=lfn, size=1, checksum="1", se=se, **kw)

    a_id, b_id = C.register_files(
        ctx, alice, [reg("/d/a", SE, metadata={"run": 1}), reg("/d/b", SE)], verify=False
    )
    C.register_files(ctx, alice, [reg("/d/a", SE2)], verify=False)  # same file: a new replica
    C.add_replicas(ctx, alice, [ReplicaRef(lfn="/d/b", se=SE2)], verify=False)
    M.set_metadata(ctx, alice, "/d/a", {"run": 2, "site": "LaPalma"})
    M.set_metadata(ctx, alice, "/d", {"site": "Paranal"})
    M.unset_metadata(ctx, alice, "/d", ["site"])
    refs = [ReplicaRef(lfn="/d/b", se=SE2), ReplicaRef(lfn="/d/a", se="NOWHERE")]
    assert C.remove_replica_entries(ctx, alice, refs) == 1  # no event for the missing one
    assert C.remove_file_entries(ctx, alice, ["/d/a"]) == 1
    # One batch with a new file and a new replica of a file already there: both kinds.
    (c_id, _) = C.register_files(ctx, alice, [reg("/d/c", SE), reg("/d/b", SE2)], verify=False)

    got = drain(ctx, "t", lambda conn, evs: None)
    seen = [(ev.kind, ev.se, ev.fields) for ev in got]
    assert seen == [
        (EventKind.FILE_REGISTERED, None, ()),
        (EventKind.FILE_REGISTERED, None, ()),
        (EventKind.REPLICA_ADDED, SE2, ()),
        (EventKind.REPLICA_ADDED, SE2, ()),
        (EventKind.FILE_META, None, ("run", "site")),
        (EventKind.DIR_META, None, ("site",)),
        (EventKind.DIR_META, None, ("site",)),
        (EventKind.REPLICA_REMOVED, SE2, ()),
        (EventKind.FILE_REMOVED, None, ()),
        (EventKind.FILE_REGISTERED, None, ()),
        (EventKind.REPLICA_ADDED, SE2, ()),
    ]
    assert [ev.file_id for ev in got[-2:]] == [c_id, b_id]
    assert got[1].file_id == b_id
    assert got[3].file_id == b_id
    assert {got[i].file_id for i in (0, 2, 4, 8)} == {a_id}
    assert got[5].file_id is None
    assert got[5].dir_id == got[0].dir_id
    assert all(ev.dir_id == got[0].dir_id for ev in got)
    assert [ev.seq for ev in got] == sorted({ev.seq for ev in got})
    # A consumer can skip what a metadata change cannot affect.
    assert got[5].touches({"site", "run"})
    assert not got[5].touches({"run"})
    assert got[0].touches({"anything"})


def test_an_event_names_what_it_is_about(ctx: Any) -> None:
    bad = [
        (NewEvent(EventKind.FILE_REMOVED), "names a file or a directory"),
        (NewEvent(EventKind.DIR_META, file_id=1), "dir_meta event names its directory"),
        (NewEvent(EventKind.REPLICA_ADDED, 1, 2), "cannot have se=None"),
        (NewEvent(EventKind.FILE_REGISTERED, 1, 2, se="X"), "cannot have se='X'"),
        (NewEvent(EventKind.FILE_REGISTERED, 1, 2, fields=("run",)), "does not carry changed"),
        (NewEvent(EventKind.FILE_META, 1, 2, fields=("a,b",)), "invalid field name"),
    ]
    for event, message in bad:
        with pytest.raises(ValueError, match=message), ctx.db.write() as conn:
            ctx.events.add(conn, [NewEvent(EventKind.FILE_REGISTERED, 1, 2), event], NOW())
    with ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(catalog_events)).scalar_one() == 0


# --- late commits ----------------------------------------------------------------------------
def test_an_event_committed_late_is_not_skipped(ctx: Any, applied_table: Table) -> None:
    """Writer A inserts first and commits last. A cursor on the autoincrement id would step
    over A's event (its id is below one already consumed); the seq cursor gets it."""
    if ctx.db.is_sqlite:
        pytest.skip("SQLite serializes write transactions: commits come in insert order")
    E.register_consumer(ctx, "late")
    a_inserted, release_a = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer_a() -> None:
        try:
            with ctx.db.write() as conn:
                ctx.events.add(conn, [NewEvent(EventKind.FILE_REGISTERED, 1, 1)], NOW())
                a_inserted.set()
                assert release_a.wait(30)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer_a)
    thread.start()
    try:
        assert a_inserted.wait(30)
        write_events(ctx, [2])  # B: inserted after A, committed before A
        started = time.monotonic()
        # The sequencer and the consumer do not wait for A's open transaction.
        assert [ev.file_id for ev in drain(ctx, "late", record)] == [2]
        assert time.monotonic() - started < 10  # a lock wait would last until A commits
    finally:
        release_a.set()
        thread.join(30)
    assert not errors
    with ctx.db.read() as conn:
        ids = dict(conn.execute(select(catalog_events.c.file_id, catalog_events.c.event_id)).all())
    assert ids[1] < ids[2]  # the old cursor (event_id > 2's id) would never see A's event
    assert [ev.file_id for ev in drain(ctx, "late", record)] == [1]
    assert applied_ids(ctx) == [1, 2]


def _in_thread(fn: Any, timeout: float = 10) -> None:
    """Run ``fn`` in a thread and fail if it is still blocked at ``timeout``: the caller
    holds the other transaction open until after, so any lock wait shows."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"blocked for {timeout} s"
    assert not errors, errors


def test_writers_do_not_wait_for_the_sequencer_or_pruning(ctx: Any) -> None:
    """The sequencer's and pruning's row locks are on committed events only: a writer
    inserting and committing meanwhile is not held up (nor deadlocks) on MariaDB/PostgreSQL,
    and neither waits for a writer's open transaction."""
    if ctx.db.is_sqlite:
        pytest.skip("SQLite serializes write transactions")
    E.register_consumer(ctx, "c")
    write_events(ctx, [1, 2])
    with ctx.db.write() as conn:
        assert ctx.events.sequence(conn, 100) == 2  # lock row and both events locked
        _in_thread(lambda: write_events(ctx, [3]))
    drain(ctx, "c", lambda c, e: None)
    write_events(ctx, [4])
    with ctx.db.write() as conn:
        assert ctx.events.prune(conn, 10**9, 100) == 3  # deleting, locks held
        _in_thread(lambda: write_events(ctx, [5]))
    inserted, release = threading.Event(), threading.Event()

    def open_writer() -> None:
        with ctx.db.write() as conn:
            ctx.events.add(conn, [NewEvent(EventKind.FILE_REGISTERED, 6, 1)], NOW())
            inserted.set()
            assert release.wait(30)

    holder = threading.Thread(target=open_writer)
    holder.start()
    try:
        assert inserted.wait(30)
        _in_thread(lambda: E.sequence(ctx))
        _in_thread(lambda: drain(ctx, "c", lambda c, e: None))
        _in_thread(lambda: E.prune(ctx))
    finally:
        release.set()
        holder.join(30)
    assert [ev.file_id for ev in drain(ctx, "c", lambda c, e: None)] == [6]


def test_concurrent_writers_and_consumer_replicas_apply_each_event_once(
    ctx: Any, applied_table: Table
) -> None:
    """Writer threads hold their transactions open for random times (commits out of insert
    order) while two replicas of one consumer and a sequencer run: every event applied once."""
    import random

    E.register_consumer(ctx, "twins")
    writers, per_writer = 4, 60
    done = threading.Event()
    errors: list[BaseException] = []
    applied_by: dict[str, int] = {"r0": 0, "r1": 0}

    def writer(w: int) -> None:
        rnd = random.Random(w)
        try:
            for i in range(per_writer):
                with ctx.db.write() as conn:
                    n = rnd.randint(1, 3)
                    base = (w * per_writer + i) * 10
                    events = [NewEvent(EventKind.FILE_REGISTERED, base + k, 1) for k in range(n)]
                    ctx.events.add(conn, events, NOW())
                    time.sleep(rnd.uniform(0, 0.01))
        except BaseException as exc:
            errors.append(exc)

    def replica(name: str) -> None:
        def count(conn: Connection, events: Sequence[Event]) -> None:
            record(conn, events)
            applied_by[name] += len(events)

        try:
            while True:
                finished = done.is_set()
                if not E.consume(ctx, "twins", count, limit=7) and finished:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    consumers = [threading.Thread(target=replica, args=(n,)) for n in applied_by]
    for t in threads + consumers:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    for t in consumers:
        t.join(120)
    assert not errors, errors
    with ctx.db.read() as conn:
        written = sorted(conn.execute(select(catalog_events.c.file_id)).scalars())
        seqs = list(conn.execute(select(catalog_events.c.seq)).scalars())
    assert len(written) >= writers * per_writer
    assert applied_ids(ctx) == written
    assert None not in seqs
    assert len(set(seqs)) == len(seqs)
    assert sum(applied_by.values()) == len(written)
    assert E.consumers(ctx)[0].position == max(seqs)


# --- separate processes ------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import os, random, sys, time
    from pathlib import Path
    from sqlalchemy import BigInteger, Column, MetaData, Table, insert
    from ctaprod.core.events import EventKind, NewEvent
    from ctaprod.core.settings import Settings
    from ctaprod.db.engine import Database
    from ctaprod.db.types import utcnow
    from ctaprod.logic import events as E
    from ctaprod.logic.context import Context

    url, secret, state, role, arg, stop = sys.argv[1:7]
    ctx = Context(Database(url), Settings(database_url=url, secret_key=secret,
                                          state_dir=Path(state)))
    applied = Table("test_applied_events", MetaData(),
                    Column("file_id", BigInteger, primary_key=True, autoincrement=False),
                    Column("seq", BigInteger, nullable=False),
                    Column("pid", BigInteger, nullable=False))
    print("ready", flush=True)
    if role == "write":
        base, count = (int(x) for x in arg.split(":"))
        rnd = random.Random(base)
        for i in range(count):
            with ctx.db.write() as conn:
                ctx.events.add(conn, [NewEvent(EventKind.FILE_REGISTERED, base + i, 1)], utcnow())
                time.sleep(rnd.uniform(0, 0.02))
    else:
        delay = float(arg)
        def handle(conn, events):
            rows = [{"file_id": e.file_id, "seq": e.seq, "pid": os.getpid()} for e in events]
            conn.execute(insert(applied), rows)
            time.sleep(delay)
        while True:
            finished = os.path.exists(stop)
            n = E.consume(ctx, "proc", handle, limit=5)
            if n:
                print(n, flush=True)
            elif finished:
                break
            else:
                time.sleep(0.01)
    ctx.db.dispose()
    """
)


def _spawn(ctx: Any, tmp_path: Path, role: str, arg: str, name: str) -> subprocess.Popen[str]:
    s = ctx.settings
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, s.db_url(), s.secret_key, str(tmp_path / name), role, arg,
         str(tmp_path / "stop")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def _finish(procs: Sequence[subprocess.Popen[str]]) -> None:
    try:
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_processes_out_of_order_commits_a_killed_consumer_and_replicas(
    ctx: Any, applied_table: Table, tmp_path: Path
) -> None:
    """Two writer processes commit out of insert order; a consumer process is SIGKILLed in
    the middle of its work, then two replicas of it (processes) finish: every event applied
    exactly once (a repeat would break the handler's primary key and fail its process)."""
    E.register_consumer(ctx, "proc")
    per_writer = 300
    victim = _spawn(ctx, tmp_path, "consume", "0.005", "victim")
    writers = [
        _spawn(ctx, tmp_path, "write", f"{w * 100_000}:{per_writer}", f"w{w}") for w in range(2)
    ]
    assert victim.stdout is not None
    for _ in range(10):  # some batches committed, then killed mid-way (often in a handler)
        assert victim.stdout.readline().strip()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    assert victim.returncode == -signal.SIGKILL
    before = len(applied_ids(ctx))
    assert 0 < before < 2 * per_writer
    replicas = [_spawn(ctx, tmp_path, "consume", "0.002", f"r{i}") for i in range(2)]
    _finish(writers)
    (tmp_path / "stop").touch()
    _finish(replicas)
    expected = [w * 100_000 + i for w in range(2) for i in range(per_writer)]
    assert applied_ids(ctx) == expected
    with ctx.db.read() as conn:
        by_pid = dict(
            conn.execute(select(applied.c.pid, func.count()).group_by(applied.c.pid)).all()
        )
    assert by_pid.get(victim.pid, 0) == before
    assert sum(by_pid.values()) == 2 * per_writer


# --- cursors and pruning -----------------------------------------------------------------------
def test_registration_starts_at_the_end_and_is_idempotent(ctx: Any) -> None:
    write_events(ctx, [1, 2])
    E.sequence(ctx)
    position = E.register_consumer(ctx, "late-comer")
    assert position > 0
    assert E.register_consumer(ctx, "from-start", from_start=True) == 0
    write_events(ctx, [3])
    assert [ev.file_id for ev in drain(ctx, "late-comer", lambda c, e: None)] == [3]
    assert E.register_consumer(ctx, "late-comer") > position  # kept where it is
    assert [ev.file_id for ev in drain(ctx, "from-start", lambda c, e: None, limit=2)] == [1, 2, 3]
    assert [(c.consumer, c.behind) for c in E.consumers(ctx)] == [
        ("from-start", 0),
        ("late-comer", 0),
    ]


def test_a_failing_handler_leaves_the_cursor(ctx: Any, applied_table: Table) -> None:
    E.register_consumer(ctx, "c")
    write_events(ctx, [1, 2, 3])

    def fail(conn: Connection, events: Sequence[Event]) -> None:
        record(conn, events)
        raise RuntimeError("handler broke")

    with pytest.raises(RuntimeError, match="handler broke"):
        E.consume(ctx, "c", fail)
    assert applied_ids(ctx) == []
    assert [ev.file_id for ev in drain(ctx, "c", record)] == [1, 2, 3]


def test_unknown_consumers_and_bad_arguments(ctx: Any) -> None:
    with pytest.raises(NotFound, match="no event consumer 'ghost': register it first"):
        E.consume(ctx, "ghost", lambda c, e: None)
    with pytest.raises(NotFound, match="no event consumer 'ghost'"):
        E.unregister_consumer(ctx, "ghost")
    with pytest.raises(InvalidInput, match="invalid event consumer name"):
        E.register_consumer(ctx, "")
    E.register_consumer(ctx, "c")
    with pytest.raises(InvalidInput, match="limit must be at least 1"):
        E.consume(ctx, "c", lambda c, e: None, limit=0)


def test_pruning_keeps_what_the_slowest_consumer_has_not_read(ctx: Any) -> None:
    assert E.prune(ctx) == 0
    write_events(ctx, range(1, 11))
    E.sequence(ctx)
    assert E.prune(ctx) == 0  # no consumer: nothing is known to be read
    E.register_consumer(ctx, "fast", from_start=True)
    E.register_consumer(ctx, "slow", from_start=True)
    drain(ctx, "fast", lambda c, e: None)
    E.consume(ctx, "slow", lambda c, e: None, limit=4)
    write_events(ctx, [11])  # never sequenced: never pruned
    assert E.prune(ctx, batch=3, max_batches=1) == 3  # bounded
    assert E.prune(ctx, batch=3) == 1
    with ctx.db.read() as conn:
        left = sorted(conn.execute(select(catalog_events.c.file_id)).scalars())
    assert left == list(range(5, 12))
    assert [ev.file_id for ev in drain(ctx, "slow", lambda c, e: None)] == list(range(5, 12))
    E.unregister_consumer(ctx, "slow")
    # Only fast is left: it read up to 10, not 11 (sequenced by slow's drain).
    assert E.prune(ctx) == 6
    assert [ev.file_id for ev in drain(ctx, "fast", lambda c, e: None)] == [11]
    assert E.prune(ctx) == 1
    with ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(catalog_events)).scalar_one() == 0


def test_seqs_are_not_reused_after_pruning_and_a_lost_sequencer_row(ctx: Any) -> None:
    E.register_consumer(ctx, "c")
    write_events(ctx, [1, 2])
    [*_, last] = drain(ctx, "c", lambda c, e: None)
    assert E.prune(ctx) == 2
    with ctx.db.write() as conn:
        conn.execute(event_sequencer.delete())
    write_events(ctx, [3])
    [again] = drain(ctx, "c", lambda c, e: None)  # the mark is rebuilt from the cursors
    assert (again.file_id, again.seq > last.seq) == (3, True)


def test_sequencing_from_two_databases_handles(ctx: Any, settings: Settings) -> None:
    """Two processes' engines sequencing at once hand out each seq once (the lock row)."""
    other = Database(settings.db_url())
    try:
        from ctaprod.logic.context import Context

        ctx2 = Context(other, settings)
        errors: list[BaseException] = []

        def run(c: Any, base: int) -> None:
            try:
                for i in range(40):
                    write_events(c, [base + i])
                    E.sequence(c)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(c, b)) for c, b in ((ctx, 0), (ctx2, 1000))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        with ctx.db.read() as conn:
            seqs = list(conn.execute(select(catalog_events.c.seq)).scalars())
        assert len(seqs) == 80
        assert None not in seqs
        assert len(set(seqs)) == 80
    finally:
        other.dispose()
