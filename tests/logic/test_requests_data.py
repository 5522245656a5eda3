"""Request operations on real POSIX SEs and the real catalog: the failover path end to end
(move the file to its target, drop the failover copy, the job becomes Done), registrations
kept as requests, idempotent re-execution, and the last replica never removed."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.requests import RequestSpec
from ctaprod.core.settings import DataSettings, Settings, StorageElementConfig
from ctaprod.core.storage import FileUpload, se_path
from ctaprod.logic import catalog
from ctaprod.logic import dataops as D
from ctaprod.logic import requests as L
from ctaprod.logic import storage as S
from tests.agents.helpers import ALICE, World
from tests.logic.conftest import user_identity

OPERATOR = user_identity("olga", "ctao_ops", frozenset({"Operator"}))
DATA = b"cherenkov" * 1000
LFN = "/ctao/user/alice/run1/out.dat"


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    from ctaprod.server.services import build_services

    def se(name: str) -> StorageElementConfig:
        return StorageElementConfig(base_path=str(tmp_path / "se" / name), site="LCG.A.org")

    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
        secret_key="k" * 48,
        storage_elements={name: se(name) for name in ("DISK-A", "DISK-B", "FAILOVER-A")},
        data=DataSettings(default_se="DISK-A", se_groups={"failover": ["FAILOVER-A"]}),
    )
    svc = build_services(settings, migrate_db=False)
    yield World(svc)
    svc.ctx.db.dispose()


def on_se(world: World, se: str, lfn: str = LFN) -> bool:
    return world.ctx.storage(se).exists(se_path(lfn))


def replicas(world: World, lfn: str = LFN) -> list[str]:
    info = catalog.get_files(world.ctx, [lfn]).get(lfn)
    return [] if info is None else sorted(info.replicas)


def request(world: World, *ops: dict[str, Any], job_id: int | None = None) -> int:
    spec = RequestSpec.model_validate({"job_id": job_id, "operations": list(ops)})
    return L.create_request(world.ctx, ALICE, spec)


def failover_ops(job: bool = True) -> list[dict[str, Any]]:
    files = [{"lfn": LFN}]
    ops: list[dict[str, Any]] = [
        {
            "type": "ReplicateAndRegister",
            "arguments": {"target_ses": ["DISK-A"], "source_se": "FAILOVER-A"},
            "files": files,
        },
        {"type": "RemoveReplica", "arguments": {"se": "FAILOVER-A"}, "files": files},
    ]
    if job:
        ops.append({"type": "SetJobStatus", "arguments": {"status": "Done"}})
    return ops


def test_failover_request_moves_the_file_once_the_se_is_back(world: World) -> None:
    ctx = world.ctx
    job_id, _, ident = world.running_job()
    D.put_and_register(ctx, ALICE, FileUpload(lfn=LFN), io.BytesIO(DATA), "FAILOVER-A")
    world.report(ident, "Completed", "Requests pending")
    S.ban(ctx, OPERATOR, "DISK-A", "write", "disk full")
    rid = request(world, *failover_ops(), job_id=job_id)

    assert L.execute_due(ctx).retrying == 1
    info = L.get_request(ctx, ALICE, rid)
    assert info.status == "Waiting"
    assert "disk full" in info.operations[0].files[0].error
    assert replicas(world) == ["FAILOVER-A"]
    assert world.status(job_id) == "Completed"

    S.allow(ctx, OPERATOR, "DISK-A", "write")
    world.clock.advance(ctx.settings.data.request_backoff_seconds)
    stats = L.execute_due(ctx)
    assert (stats.done, stats.operations_done) == (1, 3)
    assert replicas(world) == ["DISK-A"]
    assert on_se(world, "DISK-A")
    assert not on_se(world, "FAILOVER-A")
    assert world.status(job_id) == "Done"

    # The same operations again: everything has already happened, so all is Done at once.
    again = request(world, *failover_ops(job=False))
    assert L.execute_due(ctx).done == 1
    assert L.get_request(ctx, ALICE, again).operations[1].files[0].attempts == 1
    assert replicas(world) == ["DISK-A"]


def test_register_file_and_replica_kept_as_requests(world: World) -> None:
    ctx = world.ctx
    parent = "/ctao/user/alice/run1/in.dat"
    D.put_and_register(ctx, ALICE, FileUpload(lfn=parent), io.BytesIO(b"input"), "DISK-A")
    for se in ("DISK-A", "DISK-B"):  # stored by the job, not registered
        ctx.storage(se).put(se_path(LFN), io.BytesIO(DATA))
    reg = {
        "type": "RegisterFile",
        "arguments": {"se": "DISK-A"},
        "files": [{"lfn": LFN, "size": len(DATA), "checksum": adler(DATA), "parents": [parent]}],
    }
    rep = {"type": "RegisterReplica", "arguments": {"se": "DISK-B"}, "files": [{"lfn": LFN}]}
    rid = request(world, reg, rep)
    assert L.execute_due(ctx).done == 1, L.get_request(ctx, ALICE, rid)
    assert replicas(world) == ["DISK-A", "DISK-B"]
    info = catalog.get_files(ctx, [LFN])[LFN]
    assert (info.size, info.checksum, info.owner) == (len(DATA), adler(DATA), "alice")
    request(world, reg, rep)  # registering the same again is Done, nothing doubled
    assert L.execute_due(ctx).done == 1
    assert replicas(world) == ["DISK-A", "DISK-B"]

    bad = dict(reg, files=[{"lfn": LFN, "size": 1, "checksum": "1"}])
    ctx.settings.data.request_max_attempts = 1
    rid = request(world, bad)
    assert L.execute_due(ctx).failed == 1
    assert L.get_request(ctx, ALICE, rid).error.startswith(f"RegisterFile {LFN}: ")


def test_remove_file_and_the_last_replica_stays(world: World) -> None:
    ctx = world.ctx
    D.put_and_register(ctx, ALICE, FileUpload(lfn=LFN), io.BytesIO(DATA), "DISK-A")
    rm_replica = {"type": "RemoveReplica", "arguments": {"se": "DISK-A"}, "files": [{"lfn": LFN}]}
    rid = request(world, rm_replica)
    assert L.execute_due(ctx).failed == 1  # at once: retrying cannot help
    info = L.get_request(ctx, ALICE, rid)
    assert "DISK-A holds its last replica" in info.error
    assert info.operations[0].files[0].attempts == 1
    assert replicas(world) == ["DISK-A"]
    assert on_se(world, "DISK-A")

    gone = {"type": "RemoveFile", "files": [{"lfn": LFN}]}
    request(world, gone)
    request(world, gone)
    assert L.execute_due(ctx).done == 2
    assert replicas(world) == []
    assert not on_se(world, "DISK-A")
