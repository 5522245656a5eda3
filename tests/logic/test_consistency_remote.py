"""The consistency check through the logic on real XRootD and S3 servers (one cheap test)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctaprod.core.settings import Settings, StorageElementConfig
from ctaprod.core.storage import FileUpload
from ctaprod.logic import consistency as C
from ctaprod.logic import dataops as D
from ctaprod.logic.context import Context
from tests.logic.conftest import user_identity
from tests.resources.servers import (  # noqa: F401 - fixtures
    S3Server,
    XRootDServer,
    s3_server,
    xrootd_server,
)

ALICE = user_identity("alice")
OPERATOR = user_identity("olga", "ctao_ops", frozenset({"Operator"}))
TOP = "/ctao/user/alice/check"


@pytest.fixture
def ctx(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Context]:
    from ctaprod.server.services import build_services

    xrd: XRootDServer = request.getfixturevalue("xrootd_server")
    s3: S3Server = request.getfixturevalue("s3_server")
    base = f"check-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="k" * 48,
        storage_elements={
            "XRD": StorageElementConfig(
                plugin="xrootd", endpoint=xrd.endpoint, base_path=f"/{base}"
            ),
            "S3": StorageElementConfig(
                plugin="s3",
                endpoint=s3.endpoint,
                base_path=base,
                options={
                    "bucket": s3.bucket,
                    "access_key": s3.access_key,
                    "secret_key": s3.secret_key,
                    "max_attempts": 1,
                },
            ),
        },
    )
    svc = build_services(settings, migrate_db=False)
    yield svc.ctx
    svc.ctx.db.dispose()


@pytest.mark.parametrize("se", ["XRD", "S3"])
def test_check_on_a_remote_se(ctx: Context, se: str) -> None:
    for name in ("ok.dat", "sub/ok.dat", "gone.dat", "short.dat"):
        D.put_and_register(ctx, ALICE, FileUpload(lfn=f"{TOP}/{name}"), io.BytesIO(b"x" * 99), se)
    storage = ctx.storage(se)
    storage.remove(f"{TOP}/gone.dat")
    storage.put(f"{TOP}/short.dat", io.BytesIO(b"x" * 98))
    storage.put(f"{TOP}/sub/orphan.dat", io.BytesIO(b"o"))
    stale = f"{TOP}/.a.dat{D.TEMPORARY_MARK}{'d' * 32}"
    storage.put(stale, io.BytesIO(b"s"))
    storage.put("/ctao/user/alice/checked/outside.dat", io.BytesIO(b"o"))
    report = C.check(ctx, OPERATOR, TOP, se, checksums=True)
    assert report.missing_on_storage.lfns == [f"{TOP}/gone.dat"]
    assert report.orphans_on_storage.lfns == [f"{TOP}/sub/orphan.dat"]
    assert report.size_mismatch.lfns == [f"{TOP}/short.dat"]
    assert report.stale_uploads.lfns == [stale]
    assert report.checksum_mismatch.count == 0
    assert (report.storage_files, report.catalog_replicas) == (5, 4)
    young = C.check(ctx, OPERATOR, TOP, se, remove_stale_uploads=True)  # modified just now
    assert (young.kept_stale_uploads, young.removed_stale_uploads.count) == (1, 0)
    assert storage.exists(stale)
