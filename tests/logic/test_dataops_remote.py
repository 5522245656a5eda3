"""Data operations across the three plugins on real servers (POSIX, XRootD, S3): one test,
since starting the servers costs seconds."""

from __future__ import annotations

import io
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctaprod.core.errors import Conflict, Unavailable
from ctaprod.core.settings import Settings, StorageElementConfig
from ctaprod.core.storage import FileUpload, se_path
from ctaprod.logic import catalog
from ctaprod.logic import dataops as D
from ctaprod.logic.context import Context
from ctaprod.resources.storage.s3 import MIN_PART_SIZE
from tests.logic.conftest import user_identity
from tests.resources.servers import (  # noqa: F401 - fixtures
    S3Server,
    XRootDServer,
    s3_server,
    xrootd_server,
)

ALICE = user_identity("alice")
LFN = "/ctao/user/alice/remote/file.dat"
DATA = bytes(range(251)) * 30_000  # ~7.5 MB: several chunks, two S3 parts


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> tuple[XRootDServer, S3Server]:
    return request.getfixturevalue("xrootd_server"), request.getfixturevalue("s3_server")


@pytest.fixture
def ctx(db_url: str, tmp_path: Path, servers: tuple[XRootDServer, S3Server]) -> Iterator[Context]:
    from ctaprod.server.services import build_services

    xrd, s3 = servers
    base = f"dataops-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="k" * 48,
        storage_elements={
            "DISK": StorageElementConfig(base_path=str(tmp_path / "disk"), site="LCG.A.org"),
            "XRD": StorageElementConfig(
                plugin="xrootd",
                endpoint=xrd.endpoint,
                base_path=f"/{base}",
                site="LCG.B.org",
            ),
            "S3": StorageElementConfig(
                plugin="s3",
                endpoint=s3.endpoint,
                base_path=base,
                site="LCG.C.org",
                options={
                    "bucket": s3.bucket,
                    "access_key": s3.access_key,
                    "secret_key": s3.secret_key,
                    "part_size": MIN_PART_SIZE,
                    "max_attempts": 1,
                },
            ),
        },
    )
    svc = build_services(settings, migrate_db=False)
    yield svc.ctx
    svc.ctx.db.dispose()


def test_transfers_between_posix_xrootd_and_s3(
    ctx: Context, servers: tuple[XRootDServer, S3Server]
) -> None:
    s3 = servers[1]
    adler = f"{zlib.adler32(DATA) & 0xFFFFFFFF:08x}"
    stored = D.put_and_register(ctx, ALICE, FileUpload(lfn=LFN), io.BytesIO(DATA), "XRD")
    assert (stored.size, stored.checksum) == (len(DATA), adler)
    D.replicate_and_register(ctx, ALICE, LFN, "S3")
    D.replicate_and_register(ctx, ALICE, LFN, "DISK", source_se="S3")
    assert sorted(catalog.get_files(ctx, [LFN])[LFN].replicas) == ["DISK", "S3", "XRD"]
    for site, se in [("LCG.A.org", "DISK"), ("LCG.B.org", "XRD"), ("LCG.C.org", "S3")]:
        replica = D.open_best_replica(ctx, ALICE, LFN, site)
        assert replica.se == se
        with replica.stream as stream:
            assert stream.read() == DATA
    # The S3 copy rewritten behind the SE's back: copying from it fails, nothing is left.
    D.remove_replica(ctx, ALICE, LFN, "DISK")
    prefix = ctx.storage("S3").prefix  # type: ignore[attr-defined]
    key = f"{prefix}/{se_path(LFN).lstrip('/')}"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"X" + DATA[1:])
    with pytest.raises(Unavailable, match="mismatch"):
        D.replicate_and_register(ctx, ALICE, LFN, "DISK", source_se="S3")
    assert not ctx.storage("DISK").exists(se_path(LFN))
    assert sorted(catalog.get_files(ctx, [LFN])[LFN].replicas) == ["S3", "XRD"]
    result = D.remove_file(ctx, ALICE, LFN)
    assert result.file_removed
    assert catalog.get_files(ctx, [LFN]) == {}
    assert not any(ctx.storage(se).exists(se_path(LFN)) for se in ("DISK", "XRD", "S3"))


@pytest.mark.parametrize("se", ["XRD", "S3"])
def test_concurrent_puts_on_remote_ses(
    ctx: Context, servers: tuple[XRootDServer, S3Server], se: str
) -> None:
    """Two puts of one LFN with different content: one wins, the bytes at the final path
    are the ones the catalog describes, no temporary copy is left."""
    from tests.logic.test_dataops import race

    xrd, s3 = servers
    small = DATA[:300_000]
    outcomes = race(ctx, LFN, [small, small[::-1] + b"x"], se)
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1, outcomes
    info = catalog.get_files(ctx, [LFN])[LFN]
    storage = ctx.storage(se)
    with storage.open(se_path(LFN)) as stream:
        stored = stream.read()
    assert (info.size, info.checksum) == (len(stored), f"{zlib.adler32(stored) & 0xFFFFFFFF:08x}")
    if se == "S3":
        prefix = f"{storage.prefix}/"  # type: ignore[attr-defined]
        listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
        names = [item["Key"][len(prefix) :] for item in listed.get("Contents", [])]
    else:
        base = xrd.data / storage.base_path.lstrip("/")  # type: ignore[attr-defined]
        names = [str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()]
    assert names == [LFN.lstrip("/")]
