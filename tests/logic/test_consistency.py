"""Catalog <-> storage consistency check on a real POSIX SE and the real catalog: every kind
of inconsistency found, the repair removes only old stale uploads, and only for operators."""

from __future__ import annotations

import io
import os
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.errors import Forbidden, InvalidInput, NotFound, Unavailable
from ctaprod.core.settings import DataSettings, Settings, StorageElementConfig
from ctaprod.core.storage import FileUpload
from ctaprod.logic import catalog
from ctaprod.logic import consistency as C
from ctaprod.logic import dataops as D
from ctaprod.logic import storage as S
from ctaprod.logic.context import Context
from tests.logic.conftest import user_identity

ALICE = user_identity("alice")
OPERATOR = user_identity("olga", "ctao_ops", frozenset({"Operator"}))
TOP = "/ctao/user/alice/prod"
DATA = bytes(range(256)) * 40
OLD = time.time() - 2 * 86_400


@pytest.fixture
def ctx(db_url: str, tmp_path: Path) -> Iterator[Context]:
    from ctaprod.server.services import build_services

    def se(name: str) -> StorageElementConfig:
        return StorageElementConfig(base_path=str(tmp_path / "se" / name), site="LCG.A.org")

    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="k" * 48,
        storage_elements={"DISK-A": se("DISK-A"), "DISK-B": se("DISK-B")},
        data=DataSettings(default_se="DISK-A"),
    )
    svc = build_services(settings, migrate_db=False)
    yield svc.ctx
    svc.ctx.db.dispose()


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def local(ctx: Context, lfn: str, se: str = "DISK-A") -> Path:
    return Path(ctx.settings.storage_element(se).base_path) / lfn.lstrip("/")


def put(ctx: Context, lfn: str, data: bytes = DATA, se: str = "DISK-A") -> None:
    D.put_and_register(ctx, ALICE, FileUpload(lfn=lfn), io.BytesIO(data), se)


def write(path: Path, data: bytes, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def on_disk(ctx: Context, se: str = "DISK-A") -> set[str]:
    base = Path(ctx.settings.storage_element(se).base_path)
    return {"/" + str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}


STALE_OLD = f"{TOP}/run1/.old.dat{D.TEMPORARY_MARK}{'a' * 32}"
STALE_NEW = f"{TOP}/run1/.new.dat{D.TEMPORARY_MARK}{'b' * 32}"


@pytest.fixture
def damaged(ctx: Context) -> Context:
    """A directory with one file of each kind on DISK-A (and consistent ones around)."""
    for name in ("ok1.dat", "ok2.dat", "sub/ok3.dat", "sub/deeper/ok4.dat"):
        put(ctx, f"{TOP}/run1/{name}")
    put(ctx, f"{TOP}/run1/gone.dat")
    local(ctx, f"{TOP}/run1/gone.dat").unlink()  # replica entry, no file
    write(local(ctx, f"{TOP}/run1/sub/behind.dat"), b"behind the catalog's back")
    put(ctx, f"{TOP}/run1/trunc.dat")
    with open(local(ctx, f"{TOP}/run1/trunc.dat"), "r+b") as handle:
        handle.truncate(100)
    put(ctx, f"{TOP}/run1/corrupt.dat")
    target = local(ctx, f"{TOP}/run1/corrupt.dat")
    target.write_bytes(b"X" + target.read_bytes()[1:])  # same size, other bytes
    write(local(ctx, STALE_OLD), b"left by a killed upload", OLD)
    write(local(ctx, STALE_NEW), b"an upload in flight")
    put(ctx, f"{TOP}/run1/only-on-b.dat", se="DISK-B")  # not DISK-A's business...
    write(local(ctx, f"{TOP}/run1/only-on-b.dat"), DATA)  # ...but this copy is an orphan
    put(ctx, f"{TOP}/run1/both.dat")
    D.replicate_and_register(ctx, ALICE, f"{TOP}/run1/both.dat", "DISK-B")
    put(ctx, f"{TOP}/other/fine.dat")  # outside the checked directory
    write(local(ctx, f"{TOP}/other/orphan.dat"), b"outside")
    write(local(ctx, f"{TOP}/run10/orphan.dat"), b"a sibling with the same prefix")
    return ctx


def test_every_kind_is_found(damaged: Context) -> None:
    ctx = damaged
    report = C.check(ctx, OPERATOR, f"{TOP}/run1", "DISK-A")
    assert report.missing_on_storage.lfns == [f"{TOP}/run1/gone.dat"]
    assert sorted(report.orphans_on_storage.lfns) == [
        f"{TOP}/run1/only-on-b.dat",
        f"{TOP}/run1/sub/behind.dat",
    ]
    assert sorted(report.stale_uploads.lfns) == sorted([STALE_NEW, STALE_OLD])
    assert report.size_mismatch.lfns == [f"{TOP}/run1/trunc.dat"]
    assert report.checksum_mismatch.count == 0  # not asked: same size looks right
    assert report.storage_files == 11  # gone.dat is gone
    assert report.catalog_replicas == 8  # only-on-b.dat is on DISK-B only
    assert not report.consistent
    assert report.removed_stale_uploads.count == 0

    summed = C.check(ctx, OPERATOR, f"{TOP}/run1", "DISK-A", checksums=True)
    assert summed.checksum_mismatch.lfns == [f"{TOP}/run1/corrupt.dat"]
    assert summed.size_mismatch.lfns == [f"{TOP}/run1/trunc.dat"]  # not checksummed again
    assert summed.model_dump(exclude={"checksum_mismatch", "checksums"}) == report.model_dump(
        exclude={"checksum_mismatch", "checksums"}
    )

    other = C.check(ctx, OPERATOR, f"{TOP}/other", "DISK-A", checksums=True)
    assert (other.storage_files, other.catalog_replicas) == (2, 1)
    assert other.orphans_on_storage.lfns == [f"{TOP}/other/orphan.dat"]
    assert other.missing_on_storage.count == 0

    on_b = C.check(ctx, OPERATOR, TOP, "DISK-B", checksums=True)
    assert on_b.consistent
    assert (on_b.storage_files, on_b.catalog_replicas) == (2, 2)


def test_limit_keeps_the_counts(damaged: Context) -> None:
    report = C.check(damaged, OPERATOR, TOP, "DISK-A", limit=1)
    assert report.orphans_on_storage.count == 4  # two in run1, other/ and run10/
    assert len(report.orphans_on_storage.lfns) == 1
    assert report.stale_uploads.count == 2
    assert len(report.stale_uploads.lfns) == 1
    nothing = C.check(damaged, OPERATOR, TOP, "DISK-A", limit=0)
    assert nothing.orphans_on_storage == report.orphans_on_storage.model_copy(update={"lfns": []})
    with pytest.raises(InvalidInput):
        C.check(damaged, OPERATOR, TOP, "DISK-A", limit=-1)


def test_repair_removes_only_old_stale_uploads(damaged: Context) -> None:
    ctx = damaged
    before = on_disk(ctx)
    with pytest.raises(Forbidden):
        C.check(ctx, ALICE, TOP, "DISK-A")  # users cannot run checks at all
    assert on_disk(ctx) == before
    report = C.check(ctx, OPERATOR, TOP, "DISK-A", remove_stale_uploads=True)
    assert report.removed_stale_uploads.lfns == [STALE_OLD]
    assert report.kept_stale_uploads == 1  # the young one may be an upload in flight
    assert on_disk(ctx) == before - {STALE_OLD}
    again = C.check(ctx, OPERATOR, TOP, "DISK-A", remove_stale_uploads=True, min_age=timedelta(0))
    assert again.removed_stale_uploads.lfns == [STALE_NEW]
    assert on_disk(ctx) == before - {STALE_OLD, STALE_NEW}
    after = C.check(ctx, OPERATOR, TOP, "DISK-A")
    assert after.stale_uploads.count == 0
    assert after.orphans_on_storage.count == 4  # orphans are reported, never removed
    assert not after.consistent


def test_stale_upload_of_unknown_age_needs_force(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(ctx, f"{TOP}/a.dat")
    stale = f"{TOP}/.a.dat{D.TEMPORARY_MARK}{'c' * 32}"
    write(local(ctx, stale), b"x", OLD)
    monkeypatch.setattr(type(ctx.storage("DISK-A")), "modified", lambda self, path: None)
    kept = C.check(ctx, OPERATOR, TOP, "DISK-A", remove_stale_uploads=True)
    assert (kept.kept_stale_uploads, kept.removed_stale_uploads.count) == (1, 0)
    assert not kept.consistent
    assert local(ctx, stale).exists()
    forced = C.check(ctx, OPERATOR, TOP, "DISK-A", remove_stale_uploads=True, force=True)
    assert forced.removed_stale_uploads.lfns == [stale]
    assert forced.consistent  # the only problem was removed
    assert not local(ctx, stale).exists()
    assert local(ctx, f"{TOP}/a.dat").exists()


def test_refusals(ctx: Context) -> None:
    put(ctx, f"{TOP}/a.dat")
    for bad in ("relative/path", "/a/../b", "/a\x00b", ""):
        with pytest.raises(InvalidInput):
            C.check(ctx, OPERATOR, bad, "DISK-A")
    with pytest.raises(InvalidInput, match="is a file"):
        C.check(ctx, OPERATOR, f"{TOP}/a.dat", "DISK-A")
    with pytest.raises(NotFound):
        C.check(ctx, OPERATOR, TOP, "NO-SUCH-SE")
    S.ban(ctx, OPERATOR, "DISK-A", "read", "disk broken")
    with pytest.raises(Unavailable, match="disk broken"):
        C.check(ctx, OPERATOR, TOP, "DISK-A")
    S.allow(ctx, OPERATOR, "DISK-A", "read")
    S.ban(ctx, OPERATOR, "DISK-A", "write", "read-only")
    assert C.check(ctx, OPERATOR, TOP, "DISK-A").consistent  # reading is enough
    with pytest.raises(Unavailable, match="read-only"):
        C.check(ctx, OPERATOR, TOP, "DISK-A", remove_stale_uploads=True)


def test_directory_unknown_to_the_catalog(ctx: Context) -> None:
    write(local(ctx, "/ctao/nowhere/x.dat"), b"x")
    report = C.check(ctx, OPERATOR, "/ctao/nowhere", "DISK-A")
    assert report.orphans_on_storage.lfns == ["/ctao/nowhere/x.dat"]
    assert report.catalog_replicas == 0
    empty = C.check(ctx, OPERATOR, "/", "DISK-B")  # nothing anywhere: the root is fine
    assert empty.consistent
    assert (empty.storage_files, empty.catalog_replicas) == (0, 0)


def test_pages_and_batches(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small pages: every keyset page and batch boundary is crossed."""
    monkeypatch.setattr(C, "BATCH", 4)
    monkeypatch.setattr(C, "PAGE", 3)
    regs = []
    for i in range(25):
        lfn = f"{TOP}/many/d{i % 4}/f{i:02}.dat"
        data = f"file {i}".encode()
        regs.append(FileRegistration(lfn=lfn, size=len(data), checksum=adler(data), se="DISK-A"))
        if i % 5:  # every fifth file is missing
            write(local(ctx, lfn), data)
    for i in range(7):
        lfn = f"{TOP}/many/d{i % 4}/sub{i}/g.dat"
        regs.append(FileRegistration(lfn=lfn, size=1, checksum=adler(b"g"), se="DISK-A"))
        write(local(ctx, lfn), b"g")
    catalog.register_files(ctx, ALICE, regs, verify=False)
    write(local(ctx, f"{TOP}/many/d1/orphan.dat"), b"o")
    report = C.check(ctx, OPERATOR, f"{TOP}/many", "DISK-A", checksums=True)
    assert sorted(report.missing_on_storage.lfns) == sorted(
        f"{TOP}/many/d{i % 4}/f{i:02}.dat" for i in range(0, 25, 5)
    )
    assert report.orphans_on_storage.lfns == [f"{TOP}/many/d1/orphan.dat"]
    assert (report.storage_files, report.catalog_replicas) == (20 + 7 + 1, 32)
    assert report.size_mismatch.count == report.checksum_mismatch.count == 0


def test_bounded_and_said_so(damaged: Context) -> None:
    """A check stops at its bound on files and says so; it is then not consistent."""
    full = C.compare(damaged, TOP, "DISK-A")
    assert not full.truncated
    cut = C.compare(damaged, TOP, "DISK-A", max_files=2)
    assert cut.storage_files == 2
    assert "stopped after 2 files" in cut.truncated
    assert cut.catalog_replicas == 0  # the catalog pass needs the whole listing
    assert not cut.consistent
    late = C.compare(damaged, TOP, "DISK-A", max_seconds=-1.0)
    assert "time limit" in late.truncated
    assert late.storage_files == 0
    both = C.compare(damaged, TOP, "DISK-A", max_files=full.storage_files + 1)
    assert "stopped after" in both.truncated  # the catalog pass counts too
    enough = C.compare(damaged, TOP, "DISK-A", max_files=10_000)
    assert not enough.truncated
    assert enough.model_dump() == full.model_dump()
