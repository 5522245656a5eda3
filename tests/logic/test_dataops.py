"""Data operations on real POSIX SEs and the real catalog: each success and failure path
leaves storage and catalog consistent."""

from __future__ import annotations

import io
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from ctaprod.core.settings import DataSettings, Settings, StorageElementConfig
from ctaprod.core.storage import FileUpload, se_path
from ctaprod.logic import catalog
from ctaprod.logic import dataops as D
from ctaprod.logic import storage as S
from ctaprod.logic.context import Context
from ctaprod.resources.storage import STORAGE_PLUGINS, PosixStorageElement, StorageElement
from tests.logic.conftest import user_identity

ALICE = user_identity("alice")
BOB = user_identity("bob", "ctao_other")
OPERATOR = user_identity("olga", "ctao_ops", frozenset({"Operator"}))
DATA = bytes(range(256)) * 300 + b"tail"
LFN = "/ctao/user/alice/run1/file.dat"


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@pytest.fixture
def ctx(db_url: str, tmp_path: Path) -> Iterator[Context]:
    from ctaprod.server.services import build_services

    def se(name: str, site: str) -> StorageElementConfig:
        return StorageElementConfig(base_path=str(tmp_path / "se" / name), site=site)

    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="k" * 48,
        storage_elements={
            "DISK-A": se("DISK-A", "LCG.A.org"),
            "DISK-B": se("DISK-B", "LCG.B.org"),
            "FAILOVER-A": se("FAILOVER-A", "LCG.A.org"),
            "NO-RENAME": StorageElementConfig(
                plugin="test-no-rename", base_path=str(tmp_path / "se" / "NO-RENAME")
            ),
        },
        data=DataSettings(default_se="DISK-A", se_groups={"failover": ["FAILOVER-A"]}),
    )
    svc = build_services(settings, migrate_db=False)
    yield svc.ctx
    svc.ctx.db.dispose()


def on_se(ctx: Context, se: str, lfn: str = LFN) -> bool:
    return ctx.storage(se).exists(se_path(lfn))


def local_file(ctx: Context, se: str, lfn: str = LFN) -> Path:
    config = ctx.settings.storage_element(se)
    return Path(config.base_path) / se_path(lfn).lstrip("/")


def put(ctx: Context, lfn: str = LFN, data: bytes = DATA, se: str | None = None, **kw: Any) -> Any:
    return D.put_and_register(ctx, ALICE, FileUpload(lfn=lfn, **kw), io.BytesIO(data), se)


def read_all(replica: D.OpenReplica) -> bytes:
    with replica.stream as stream:
        return stream.read()


class Cut(io.RawIOBase):
    """A client that goes away after ``good`` bytes."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise InvalidInput("upload cut by the client")
        n = min(self.left, 4096 if size < 0 else size)
        self.left -= n
        return b"x" * n


def test_put_get_and_default_se(ctx: Context) -> None:
    stored = put(ctx, size=len(DATA), checksum=adler(DATA))
    assert (stored.se, stored.size, stored.checksum) == ("DISK-A", len(DATA), adler(DATA))
    info = catalog.get_files(ctx, [LFN])[LFN]
    assert (info.size, info.checksum, info.replicas, info.owner) == (
        len(DATA),
        adler(DATA),
        ["DISK-A"],
        "alice",
    )
    replica = D.open_best_replica(ctx, BOB, LFN)  # the VO can read
    assert replica.se == "DISK-A"
    assert read_all(replica) == DATA


def test_put_refusals_store_nothing(ctx: Context) -> None:
    put(ctx, "/ctao/user/alice/mine.dat", b"a")
    with pytest.raises(Forbidden):
        D.put_and_register(ctx, BOB, FileUpload(lfn=LFN), io.BytesIO(DATA), "DISK-B")
    S.ban(ctx, OPERATOR, "DISK-B", "write", "disk full")
    with pytest.raises(Unavailable, match="disk full"):
        put(ctx, se="DISK-B")
    with pytest.raises(NotFound):
        put(ctx, se="NOPE")
    with pytest.raises(Conflict, match="already in the catalog"):
        put(ctx, "/ctao/user/alice/mine.dat", b"other")
    assert read_all(D.open_best_replica(ctx, ALICE, "/ctao/user/alice/mine.dat")) == b"a"
    assert not on_se(ctx, "DISK-B")
    assert catalog.get_files(ctx, [LFN]) == {}


@pytest.mark.parametrize(
    ("source", "extra", "error"),
    [
        (Cut(0), {}, "cut"),
        (Cut(200_000), {}, "cut"),
        (io.BytesIO(DATA[:-10]), {"size": len(DATA)}, "announced"),
        (io.BytesIO(DATA), {"checksum": "00000001"}, "ADLER32"),
        (io.BytesIO(DATA), {"parents": ["/ctao/not/there"]}, "/ctao/not/there"),
    ],
    ids=["cut-at-once", "cut-midway", "short-body", "bad-checksum", "registration-refused"],
)
def test_failed_put_leaves_no_file_and_no_entry(
    ctx: Context, source: Any, extra: dict[str, Any], error: str
) -> None:
    with pytest.raises((InvalidInput, NotFound), match=error):
        D.put_and_register(ctx, ALICE, FileUpload(lfn=LFN, **extra), source, "DISK-A")
    assert not on_se(ctx, "DISK-A")
    assert list((Path(ctx.settings.storage_element("DISK-A").base_path)).rglob("*.*")) == []
    assert catalog.get_files(ctx, [LFN]) == {}


def test_best_replica_prefers_the_site_and_skips_bad_copies(ctx: Context) -> None:
    put(ctx)
    D.replicate_and_register(ctx, ALICE, LFN, "DISK-B")
    assert D.open_best_replica(ctx, ALICE, LFN, "LCG.B.org").se == "DISK-B"
    assert D.open_best_replica(ctx, ALICE, LFN, "LCG.A.org").se == "DISK-A"
    local_file(ctx, "DISK-B").write_bytes(b"truncated")  # wrong size: skipped
    assert read_all(D.open_best_replica(ctx, ALICE, LFN, "LCG.B.org")) == DATA
    S.ban(ctx, OPERATOR, "DISK-A", "read", "tape recall")
    with pytest.raises(Unavailable, match="size mismatch"):
        D.open_best_replica(ctx, ALICE, LFN, "LCG.A.org")
    S.ban(ctx, OPERATOR, "DISK-B", "read", "network")
    with pytest.raises(Unavailable, match="tape recall"):
        D.open_best_replica(ctx, ALICE, LFN)
    with pytest.raises(NotFound):
        D.open_best_replica(ctx, ALICE, "/ctao/none")


def test_replicate(ctx: Context) -> None:
    put(ctx)
    stored = D.replicate_and_register(ctx, ALICE, LFN, "FAILOVER-A")
    assert stored.copied
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["DISK-A", "FAILOVER-A"]
    assert local_file(ctx, "FAILOVER-A").read_bytes() == DATA
    assert not D.replicate_and_register(ctx, ALICE, LFN, "FAILOVER-A").copied
    with pytest.raises(NotFound, match="no replica on DISK-B"):
        D.replicate_and_register(ctx, ALICE, LFN, "DISK-B", source_se="DISK-B")
    with pytest.raises(Forbidden):
        D.replicate_and_register(ctx, BOB, LFN, "DISK-B")
    S.ban(ctx, OPERATOR, "DISK-B", "both", "downtime until Monday")
    with pytest.raises(Unavailable, match="downtime until Monday"):
        D.replicate_and_register(ctx, ALICE, LFN, "DISK-B")
    assert not on_se(ctx, "DISK-B")


def test_replicate_from_a_corrupted_copy_fails_and_cleans_up(ctx: Context) -> None:
    put(ctx)
    path = local_file(ctx, "DISK-A")
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Unavailable, match="checksum mismatch") as caught:
        D.replicate_and_register(ctx, ALICE, LFN, "DISK-B")
    assert caught.value.detail["reason"] == "checksum_mismatch"
    assert not on_se(ctx, "DISK-B")
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["DISK-A"]
    # With a good copy elsewhere, the next source is tried.
    path.write_bytes(DATA)
    D.replicate_and_register(ctx, ALICE, LFN, "FAILOVER-A")
    path.write_bytes(bytes(data))
    D.replicate_and_register(ctx, ALICE, LFN, "DISK-B")
    assert local_file(ctx, "DISK-B").read_bytes() == DATA


def test_remove_replica(ctx: Context) -> None:
    put(ctx)
    with pytest.raises(Conflict, match="last replica"):
        D.remove_replica(ctx, ALICE, LFN, "DISK-A")
    D.replicate_and_register(ctx, ALICE, LFN, "DISK-B")
    with pytest.raises(NotFound):
        D.remove_replica(ctx, ALICE, LFN, "FAILOVER-A")
    with pytest.raises(Forbidden):
        D.remove_replica(ctx, BOB, LFN, "DISK-A")
    assert D.remove_replica(ctx, ALICE, LFN, "DISK-A").removed == ["DISK-A"]
    assert not on_se(ctx, "DISK-A")
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["DISK-B"]


def test_remove_file(ctx: Context) -> None:
    put(ctx)
    D.replicate_and_register(ctx, ALICE, LFN, "DISK-B")
    D.replicate_and_register(ctx, ALICE, LFN, "FAILOVER-A")
    local_file(ctx, "FAILOVER-A").unlink()  # a lost copy does not block the removal
    S.ban(ctx, OPERATOR, "DISK-B", "write", "read-only for now")
    with pytest.raises(Forbidden):
        D.remove_file(ctx, BOB, LFN)
    with pytest.raises(Unavailable, match="read-only for now") as caught:
        D.remove_file(ctx, ALICE, LFN)
    assert caught.value.detail["removed"] == ["DISK-A", "FAILOVER-A"]
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["DISK-B"]  # the copy left
    assert on_se(ctx, "DISK-B")
    S.allow(ctx, OPERATOR, "DISK-B", "write")
    result = D.remove_file(ctx, ALICE, LFN)
    assert (result.removed, result.file_removed) == (["DISK-B"], True)
    assert catalog.get_files(ctx, [LFN]) == {}
    assert not any(on_se(ctx, se) for se in ("DISK-A", "DISK-B", "FAILOVER-A"))
    with pytest.raises(NotFound):
        D.remove_file(ctx, ALICE, LFN)


def se_files(ctx: Context, se: str) -> list[str]:
    """Every file under the SE's base (temporaries included), relative to it."""
    base = Path(ctx.settings.storage_element(se).base_path)
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


class Gate(io.RawIOBase):
    """An upload whose first read waits until every racer has started its upload, so all
    of them have passed the 'not in the catalog yet' check before any byte is stored."""

    def __init__(self, data: bytes, barrier: threading.Barrier) -> None:
        self.stream = io.BytesIO(data)
        self.barrier = barrier
        self.waited = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.waited:
            self.waited = True
            self.barrier.wait(timeout=30)
        return self.stream.read(size)


def race(ctx: Context, lfn: str, contents: list[bytes], se: str) -> list[Any]:
    """Put ``lfn`` with each of ``contents`` at once, one thread each; the outcomes."""
    barrier = threading.Barrier(len(contents))
    outcomes: list[Any] = [None] * len(contents)

    def one(index: int) -> None:
        try:
            upload = FileUpload(lfn=lfn)
            gate = Gate(contents[index], barrier)
            outcomes[index] = D.put_and_register(ctx, ALICE, upload, gate, se)  # type: ignore[arg-type]
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(contents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.mark.parametrize("same", [False, True], ids=["different-content", "same-content"])
def test_concurrent_puts_of_one_lfn(ctx: Context, same: bool) -> None:
    """Exactly one put wins; the catalog describes the bytes at the final path; the loser
    gets Conflict and leaves no temporary file (and did not touch the winner's)."""
    for round_ in range(5):
        lfn = f"/ctao/user/alice/race/file{round_}.dat"
        contents = [DATA, DATA] if same else [DATA, DATA[::-1] + b"other"]
        outcomes = race(ctx, lfn, contents, "DISK-A")
        won = [o for o in outcomes if not isinstance(o, Exception)]
        lost = [o for o in outcomes if isinstance(o, Exception)]
        assert len(won) == 1, outcomes
        assert len(lost) == 1, outcomes
        assert isinstance(lost[0], Conflict), outcomes
        assert "already in the catalog" in lost[0].message
        info = catalog.get_files(ctx, [lfn])[lfn]
        stored = local_file(ctx, "DISK-A", lfn).read_bytes()
        assert (info.size, info.checksum) == (len(stored), adler(stored))
        assert (won[0].size, won[0].checksum) == (info.size, info.checksum)
        assert info.replicas == ["DISK-A"]
    expected = [f"ctao/user/alice/race/file{i}.dat" for i in range(5)]
    assert se_files(ctx, "DISK-A") == expected  # no temporary copy left


def test_put_replaces_a_stale_file_at_the_final_path(ctx: Context) -> None:
    """A file left on the SE without a catalog entry (a crash) does not block the put."""
    local_file(ctx, "DISK-A").parent.mkdir(parents=True)
    local_file(ctx, "DISK-A").write_bytes(b"left by a crash")
    put(ctx)
    assert local_file(ctx, "DISK-A").read_bytes() == DATA
    assert se_files(ctx, "DISK-A") == [LFN.lstrip("/")]


def test_temporary_path_is_never_an_lfn() -> None:
    from ctaprod.core.lfn import check_lfn

    first, second = D.temporary_path(LFN), D.temporary_path(LFN)
    assert first != second
    assert first.startswith("/ctao/user/alice/run1/.file.dat~ctaprod-upload-")
    with pytest.raises(InvalidInput):
        check_lfn(first)
    assert D.temporary_path("/top").startswith("/.top~")
    long_name = "/ctao/" + "n" * 255
    assert len(D.temporary_path(long_name).rpartition("/")[2]) < 200


class NoRename(PosixStorageElement):
    """A real POSIX SE whose rename fails like a storage outage."""

    def rename(self, src_path: str, dst_path: str) -> None:
        assert self.exists(src_path)
        raise Unavailable(f"{self.name}: rename refused (test)", se=self.name)


@pytest.fixture
def no_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(name: str, config: StorageElementConfig) -> StorageElement:
        return NoRename(name, config.base_path)

    monkeypatch.setitem(STORAGE_PLUGINS, "test-no-rename", factory)


@pytest.mark.usefixtures("no_rename")
def test_failed_rename_undoes_the_registration(ctx: Context) -> None:
    with pytest.raises(Unavailable, match=r"NO-RENAME: could not move .* undone") as caught:
        put(ctx, se="NO-RENAME")
    assert caught.value.detail["se"] == "NO-RENAME"
    assert catalog.get_files(ctx, [LFN]) == {}
    assert se_files(ctx, "NO-RENAME") == []
    put(ctx)  # the LFN is free again
    with pytest.raises(Unavailable, match=r"NO-RENAME: could not move .* undone"):
        D.replicate_and_register(ctx, ALICE, LFN, "NO-RENAME")
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["DISK-A"]
    assert se_files(ctx, "NO-RENAME") == []
    assert local_file(ctx, "DISK-A").read_bytes() == DATA


def test_concurrent_replications_to_one_se(ctx: Context) -> None:
    """Both copy; one adds the replica and renames its copy into place, the other only
    removes its own temporary copy."""
    put(ctx)
    outcomes: list[Any] = []

    def one() -> None:
        try:
            outcomes.append(D.replicate_and_register(ctx, ALICE, LFN, "DISK-B"))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(o.copied for o in outcomes) == 1
    assert catalog.get_files(ctx, [LFN])[LFN].replicas == ["DISK-A", "DISK-B"]
    assert local_file(ctx, "DISK-B").read_bytes() == DATA
    assert se_files(ctx, "DISK-B") == [LFN.lstrip("/")]
