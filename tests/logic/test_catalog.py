"""Catalog use cases on the real test database: registration, permissions, replicas, listing."""

from __future__ import annotations

import io
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.catalog import FileRegistration, ReplicaRef
from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.core.settings import Settings
from ctaprod.db.tables import catalog_events, catalog_files, catalog_replicas
from ctaprod.logic import catalog as C
from tests.dm_helpers import make_settings, posix_se
from tests.logic.conftest import user_identity

SE = "DISK-A"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    site = "LOCAL.localhost.org"
    return make_settings(
        db_url,
        tmp_path,
        storage_elements={
            SE: posix_se(tmp_path / "se-a", site),
            "DISK-B": posix_se(tmp_path / "se-b", site),
        },
    )


@pytest.fixture
def ctx(services: Any) -> Any:
    return services.ctx


@pytest.fixture
def alice() -> Identity:
    return user_identity("alice", "ctao_user")


@pytest.fixture
def carol() -> Identity:
    return user_identity("carol", "other_group")


@pytest.fixture
def prodman() -> Identity:
    return user_identity("pm", "ctao_prod", frozenset({"ProductionManagement"}))


def reg(lfn: str, size: int = 10, checksum: str = "1", **kw: Any) -> FileRegistration:
    return FileRegistration(lfn=lfn, size=size, checksum=checksum, **kw)


def count(ctx: Any, table: Any) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def put(ctx: Any, se: str, lfn: str, data: bytes) -> FileRegistration:
    ctx.storage(se).put(lfn, io.BytesIO(data))
    return reg(lfn, len(data), f"{zlib.adler32(data) & 0xFFFFFFFF:08x}", se=se)


def test_register_lookup_and_idempotence(ctx: Any, alice: Identity) -> None:
    regs = [reg(f"/ctao/a/f{i}", se=SE, guid=f"g{i}") for i in range(3)]
    ids = C.register_files(ctx, alice, regs, verify=False)
    assert len(set(ids)) == 3
    found = C.get_files(ctx, ["/ctao/a/f0", "/ctao/a/f2", "/ctao/a/nope"])
    assert set(found) == {"/ctao/a/f0", "/ctao/a/f2"}
    info = found["/ctao/a/f0"]
    assert (info.size, info.checksum, info.guid, info.owner, info.owner_group) == (
        10,
        "00000001",
        "g0",
        "alice",
        "ctao_user",
    )
    assert info.replicas == [SE]
    # Same file again with a second SE: only the replica is added.
    again = C.register_files(ctx, alice, [reg("/ctao/a/f0", se="DISK-B")], verify=False)
    assert again == ids[:1]
    assert C.get_files(ctx, ["/ctao/a/f0"])["/ctao/a/f0"].replicas == [SE, "DISK-B"]
    assert count(ctx, catalog_files) == 3
    # Three registrations, then the new replica of a file already there.
    with ctx.db.read() as conn:
        kinds = conn.execute(
            select(catalog_events.c.kind).order_by(catalog_events.c.event_id)
        ).scalars()
        assert list(kinds) == ["file_registered"] * 3 + ["replica_added"]


def test_conflict_and_atomicity(ctx: Any, alice: Identity) -> None:
    C.register_files(ctx, alice, [reg("/ctao/b/x")], verify=False)
    batch = [reg("/ctao/b/y"), reg("/ctao/c/z"), reg("/ctao/b/x", size=11)]
    with pytest.raises(Conflict, match="/ctao/b/x"):
        C.register_files(ctx, alice, batch, verify=False)
    assert count(ctx, catalog_files) == 1
    with pytest.raises(NotFound, match="/ctao/c"):
        C.stat(ctx, alice, "/ctao/c")
    # Missing parents name the LFNs.
    with pytest.raises(InvalidInput, match="/ctao/nope"):
        C.register_files(ctx, alice, [reg("/ctao/b/w", parents=["/ctao/nope"])], verify=False)
    # Unknown SE, a file where a directory is, a directory where a file is.
    with pytest.raises(NotFound, match="NO-SUCH-SE"):
        C.register_files(ctx, alice, [reg("/ctao/b/v", se="NO-SUCH-SE")], verify=False)
    with pytest.raises(Conflict, match="directory"):
        C.register_files(ctx, alice, [reg("/ctao/b")], verify=False)
    with pytest.raises(Conflict, match="file"):
        C.register_files(ctx, alice, [reg("/ctao/b/x/inner")], verify=False)
    with pytest.raises(Conflict, match="file"):
        C.mkdir(ctx, alice, "/ctao/b/x")
    assert count(ctx, catalog_files) == 1


def test_permission_is_checked_before_storage_is_read(
    ctx: Any, alice: Identity, carol: Identity
) -> None:
    """A user who may not write the directory gets 403, not a checksum of someone's file."""
    C.register_files(ctx, alice, [put(ctx, SE, "/ctao/p/mine", b"data")], verify=True)
    bad_sum = put(ctx, SE, "/ctao/p/other", b"12345").model_copy(update={"checksum": "00000bad"})
    with pytest.raises(Forbidden, match="carol/other_group"):
        C.register_files(ctx, carol, [bad_sum], verify=True)
    put(ctx, "DISK-B", "/ctao/p/mine", b"data")
    with pytest.raises(Forbidden, match="carol/other_group"):
        C.add_replicas(ctx, carol, [ReplicaRef(lfn="/ctao/p/mine", se="DISK-B")], verify=True)


def test_lfn_rules_and_limits(ctx: Any, alice: Identity) -> None:
    for bad in ["ctao/x", "/ctao//x", "/ctao/../x", "/ctao/x/", "/ctao/a b"]:
        with pytest.raises(InvalidInput, match="invalid LFN"):
            C.get_files(ctx, [bad])
        with pytest.raises(InvalidInput, match="invalid LFN"):
            C.mkdir(ctx, alice, bad)
        with pytest.raises(InvalidInput):
            reg(bad)
    ctx.settings.data.max_lfns_per_call = 2
    with pytest.raises(TooLarge):
        C.register_files(ctx, alice, [reg(f"/t/{i}") for i in range(3)], verify=False)


def test_permissions(ctx: Any, alice: Identity, carol: Identity, prodman: Identity) -> None:
    C.mkdir(ctx, alice, "/ctao/alice")
    bob = user_identity("bob", "ctao_user")
    C.register_files(ctx, bob, [reg("/ctao/alice/by-bob")], verify=False)  # same group
    with pytest.raises(Forbidden, match="carol/other_group"):
        C.register_files(ctx, carol, [reg("/ctao/alice/sub/f")], verify=False)
    with pytest.raises(Forbidden):
        C.mkdir(ctx, carol, "/ctao/alice/x")
    with pytest.raises(Forbidden):
        C.remove_file_entries(ctx, carol, ["/ctao/alice/by-bob"])
    with pytest.raises(Forbidden):
        C.remove_replica_entries(ctx, carol, [ReplicaRef(lfn="/ctao/alice/by-bob", se=SE)])
    C.register_files(ctx, prodman, [reg("/ctao/alice/sub/f")], verify=False)
    pilot = Identity("pilot", "ctao_pilot", TokenKind.PILOT)
    with pytest.raises(Forbidden):
        C.mkdir(ctx, pilot, "/p")
    # Reading is open to all.
    assert set(C.get_files(ctx, ["/ctao/alice/sub/f"])) == {"/ctao/alice/sub/f"}
    info = C.stat(ctx, carol, "/ctao/alice/sub")
    assert (info.owner, info.owner_group, info.kind) == ("pm", "ctao_prod", "dir")
    with ctx.db.read() as conn:
        C.check_write(ctx, conn, alice, "/ctao/alice/new/deep/f")
        with pytest.raises(Forbidden):
            C.check_write(ctx, conn, carol, "/ctao/alice/new/deep/f")


def test_verify_on_storage(ctx: Any, alice: Identity) -> None:
    good = put(ctx, SE, "/ctao/v/good", b"hello world")
    C.register_files(ctx, alice, [good], verify=True)
    bad_size = put(ctx, SE, "/ctao/v/size", b"12345").model_copy(update={"size": 6})
    with pytest.raises(InvalidInput, match="size on DISK-A is 5"):
        C.register_files(ctx, alice, [bad_size], verify=True)
    bad_sum = put(ctx, SE, "/ctao/v/sum", b"12345").model_copy(update={"checksum": "00000bad"})
    with pytest.raises(InvalidInput, match="ADLER32"):
        C.register_files(ctx, alice, [bad_sum], verify=True)
    with pytest.raises(InvalidInput, match="not on DISK-B"):
        C.add_replicas(ctx, alice, [ReplicaRef(lfn="/ctao/v/good", se="DISK-B")], verify=True)
    put(ctx, "DISK-B", "/ctao/v/good", b"hello world")
    refs = [ReplicaRef(lfn="/ctao/v/good", se="DISK-B")]
    assert C.add_replicas(ctx, alice, refs, verify=True) == 1
    assert C.add_replicas(ctx, alice, refs, verify=True) == 0
    with pytest.raises(NotFound, match="/ctao/v/none"):
        C.add_replicas(ctx, alice, [ReplicaRef(lfn="/ctao/v/none", se=SE)], verify=False)
    assert count(ctx, catalog_files) == 1


def test_remove_replicas_and_files(ctx: Any, alice: Identity) -> None:
    C.register_files(ctx, alice, [reg("/r/p", se=SE)], verify=False)
    C.register_files(ctx, alice, [reg("/r/c", se=SE, parents=["/r/p"])], verify=False)
    C.add_replicas(ctx, alice, [ReplicaRef(lfn="/r/c", se="DISK-B")], verify=False)
    refs = [ReplicaRef(lfn="/r/c", se=SE), ReplicaRef(lfn="/r/missing", se=SE)]
    assert C.remove_replica_entries(ctx, alice, refs) == 1
    assert C.get_files(ctx, ["/r/c"])["/r/c"].replicas == ["DISK-B"]
    assert C.remove_file_entries(ctx, alice, ["/r/p", "/r/unknown"]) == 1
    assert C.ancestors(ctx, alice, "/r/c") == []
    assert count(ctx, catalog_replicas) == 1
    assert C.remove_file_entries(ctx, alice, ["/r/c"]) == 1
    assert count(ctx, catalog_replicas) == 0


def test_ancestry_with_depth(ctx: Any, alice: Identity) -> None:
    C.register_files(ctx, alice, [reg("/g/raw1"), reg("/g/raw2")], verify=False)
    regs = [
        reg("/g/dl1", parents=["/g/raw1", "/g/raw2"]),
        reg("/g/dl2", parents=["/g/dl1"]),  # its parent is in the same batch
    ]
    C.register_files(ctx, alice, regs, verify=False)
    up1 = C.ancestors(ctx, alice, "/g/dl2")
    assert [(r.lfn, r.depth) for r in up1] == [("/g/dl1", 1)]
    up = C.ancestors(ctx, alice, "/g/dl2", depth=5)
    assert [(r.lfn, r.depth) for r in up] == [("/g/dl1", 1), ("/g/raw1", 2), ("/g/raw2", 2)]
    down = C.descendants(ctx, alice, "/g/raw1", depth=2)
    assert [(r.lfn, r.depth) for r in down] == [("/g/dl1", 1), ("/g/dl2", 2)]
    with pytest.raises(InvalidInput):
        C.ancestors(ctx, alice, "/g/dl2", depth=0)
    with pytest.raises(NotFound):
        C.descendants(ctx, alice, "/g/none")


def test_listing_order_pages_and_stat(ctx: Any, alice: Identity) -> None:
    assert list(C.listdir(ctx, alice, "/")) == []
    names = [f"f{i:03d}" for i in range(25)]
    C.register_files(ctx, alice, [reg(f"/l/{n}") for n in reversed(names)], verify=False)
    for sub in ("zz", "aa", "mm"):
        C.mkdir(ctx, alice, f"/l/{sub}")
    pages = list(C.listdir_pages(ctx, alice, "/l", page=10))
    assert [len(p) for p in pages] == [3, 10, 10, 5]
    entries = [e for p in pages for e in p]
    assert [e.name for e in entries] == ["aa", "mm", "zz", *names]
    assert {e.kind for e in entries[:3]} == {"dir"}
    assert entries[3].size == 10
    # Long entries carry the times of stat (ISO 8601 UTC, microseconds kept on every engine).
    for entry in (entries[0], entries[4]):
        info = C.stat(ctx, alice, f"/l/{entry.name}")
        assert entry.created is not None
        assert datetime.fromisoformat(entry.created) == info.created
        assert (entry.owner, entry.owner_group) == (info.owner, info.owner_group)
    assert (entries[4].checksum, entries[4].status) == (entries[3].checksum, "AprioriGood")
    # Plain listing: kinds and names only, same order and pages.
    plain = list(C.listdir_pages(ctx, alice, "/l", page=10, long=False))
    assert [len(p) for p in plain] == [3, 10, 10, 5]
    assert [(e.kind, e.name) for p in plain for e in p] == [(e.kind, e.name) for e in entries]
    assert {(e.owner, e.created, e.size) for p in plain for e in p} == {(None, None, None)}
    # Paginated variant: follow the cursor.
    seen, cursor = [], None
    while True:
        page = C.listdir_page(ctx, alice, "/l", cursor, limit=4)
        seen += [e.name for e in page.entries]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["aa", "mm", "zz", *names]
    info = C.stat(ctx, alice, "/l")
    assert (info.kind, info.files, info.subdirs) == ("dir", 25, 3)
    assert C.stat(ctx, alice, "/l/f001").kind == "file"
    with pytest.raises(InvalidInput, match="is a file"):
        C.listdir(ctx, alice, "/l/f001")
    with pytest.raises(NotFound):
        C.listdir(ctx, alice, "/nowhere")
    assert [e.name for e in C.listdir(ctx, alice, "/")] == ["l"]


def test_names_are_case_sensitive_and_listed_bytewise(ctx: Any, alice: Identity) -> None:
    names = ["File", "file", "B", "a", "_x", "0"]
    C.register_files(
        ctx, alice, [reg(f"/cs/{n}", size=i) for i, n in enumerate(names)], verify=False
    )
    found = C.get_files(ctx, ["/cs/File", "/cs/file"])
    assert (found["/cs/File"].size, found["/cs/file"].size) == (0, 1)
    assert [e.name for e in C.listdir(ctx, alice, "/cs")] == sorted(names)


def test_registration_with_metadata(ctx: Any, alice: Identity, prodman: Identity) -> None:
    from ctaprod.core.metadata import FieldDeclaration
    from ctaprod.core.metaquery import FieldType
    from ctaprod.logic import metadata as M

    M.add_field(ctx, prodman, FieldDeclaration(name="runNumber", type=FieldType.INT))
    M.add_field(ctx, prodman, FieldDeclaration(name="site", type=FieldType.STRING))
    C.mkdir(ctx, alice, "/m")
    M.set_metadata(ctx, prodman, "/m", {"site": "LaPalma"})
    regs = [reg(f"/m/new/f{i}", metadata={"runNumber": str(i)}) for i in range(3)]
    C.register_files(ctx, alice, regs, verify=False)
    view = M.get_metadata(ctx, "/m/new/f2")
    assert view.own == {"runNumber": 2}
    # The new directory /m/new inherited the value set on /m.
    assert {v.field: v.value for v in M.get_metadata(ctx, "/m/new").effective} == {
        "site": "LaPalma"
    }
    for bad, word in (({"nofield": 1}, "nofield"), ({"runNumber": "x"}, "runNumber")):
        batch = [reg("/m/ok", metadata={"runNumber": 1}), reg("/m/bad", metadata=bad)]
        with pytest.raises(InvalidInput, match=word):
            C.register_files(ctx, alice, batch, verify=False)
    assert count(ctx, catalog_files) == 3
