"""Jobs with input data at submission (ctaprod.logic.input_data): catalog check, replica
sites, the require/prefer policies in the task-queue requirements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.errors import ApiError
from ctaprod.client.http import Client
from ctaprod.core.catalog import FileRegistration
from ctaprod.core.errors import InvalidInput
from ctaprod.core.identity import Identity
from ctaprod.core.settings import Settings
from ctaprod.logic import catalog, input_data
from tests.dm_helpers import data_settings
from tests.logic.conftest import Kit, user_identity

ADMIN = user_identity("admin", "ctao_admin", frozenset({"Admin", "ProductionManagement"}))


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return data_settings(db_url, tmp_path)


def register(kit: Kit, placement: dict[str, list[str]]) -> None:
    """Catalog entries (no bytes: verification is off) with replicas on the given SEs."""
    regs = []
    for lfn, ses in placement.items():
        regs.append(FileRegistration(lfn=lfn, size=1, checksum="1", se=ses[0]))
        regs += [FileRegistration(lfn=lfn, size=1, checksum="1", se=se) for se in ses[1:]]
    catalog.register_files(kit.ctx, ADMIN, regs)


def queue_of(kit: Kit, job_id: int) -> Any:
    from sqlalchemy import select

    from ctaprod.db.tables import tq_jobs

    with kit.ctx.db.read() as conn:
        tq_id = conn.execute(select(tq_jobs.c.tq_id).where(tq_jobs.c.job_id == job_id)).scalar()
        return kit.ctx.queues.queue_requirements(conn, [tq_id])[tq_id]


def test_missing_input_data_is_refused_whole(kit: Kit, alice: Identity) -> None:
    register(kit, {"/ctao/data/a": ["SE-A"]})
    with pytest.raises(InvalidInput) as err:
        kit.submit(alice, InputData=["/ctao/data/a", "/ctao/data/b", "LFN:/ctao/data/c"])
    assert err.value.message == "InputData not in the catalog: /ctao/data/b, /ctao/data/c"
    assert err.value.detail["missing"] == ["/ctao/data/b", "/ctao/data/c"]
    # A parametric submission with one missing file leaves nothing behind.
    with pytest.raises(InvalidInput, match="/ctao/data/x_2"):
        kit.submit(alice, Parameters=3, InputData=["/ctao/data/a", "/ctao/data/x_%n"])
    # So must the LFN entries of InputSandbox.
    with pytest.raises(InvalidInput, match=r"catalog: /ctao/sb/x.tar$"):
        kit.submit(alice, InputSandbox=["LFN:/ctao/sb/x.tar"])
    assert kit.count_jobs() == 0


def test_many_jobs_sharing_inputs_are_one_lookup(kit: Kit, alice: Identity) -> None:
    lfns = [f"/ctao/data/f{i}" for i in range(50)]
    register(kit, {key: ["SE-A", "SE-B"] for key in lfns})
    ids = kit.submit(alice, Parameters=2000, InputData=lfns)
    assert len(ids) == 2000
    assert queue_of(kit, ids[0]).data_sites == ("A", "B")
    assert queue_of(kit, ids[0]) == queue_of(kit, ids[-1])


def test_best_sites() -> None:
    where = {"/a": frozenset({"A", "B"}), "/b": frozenset({"B"}), "/c": frozenset({"A"})}
    assert input_data.best_sites(["/a", "/b"], where) == ("B",)
    assert input_data.best_sites(["/a"], where) == ("A", "B")
    # No site holds all: those holding the most.
    assert input_data.best_sites(["/a", "/b", "/c"], where) == ("A", "B")
    assert input_data.best_sites(["/b", "/c"], where) == ("A", "B")
    assert input_data.best_sites(["/x"], where) == ()


def test_prefer_records_the_replica_sites(kit: Kit, alice: Identity) -> None:
    register(kit, {"/d/1": ["SE-A", "SE-B"], "/d/2": ["SE-B2"], "/d/3": ["SE-X"]})
    [job] = kit.submit(alice, InputData=["/d/1", "/d/2"])
    req = queue_of(kit, job)
    assert (req.sites, req.data_sites) == ((), ("B",))
    # Site list kept as the job gave it; banned sites are not preferred.
    [job] = kit.submit(alice, InputData=["/d/1"], Site=["A", "C"], BannedSites=["B"])
    req = queue_of(kit, job)
    assert (req.sites, req.data_sites) == (("A", "C"), ("A",))
    # An SE without a site gives no preference.
    [job] = kit.submit(alice, InputData=["/d/3"])
    assert queue_of(kit, job).data_sites == ()
    # Jobs without input data keep their queue key (and share it).
    [a] = kit.submit(alice)
    [b] = kit.submit(alice)
    assert queue_of(kit, a) == queue_of(kit, b)
    assert "data_sites" not in queue_of(kit, a).model_dump(exclude_defaults=True)


def test_require_restricts_the_sites(kit: Kit, alice: Identity) -> None:
    register(kit, {"/d/1": ["SE-A", "SE-B"], "/d/2": ["SE-B2"], "/d/3": ["SE-X"]})
    [job] = kit.submit(alice, JobType="MC", InputData=["/d/1"])
    assert queue_of(kit, job).sites == ("A", "B")
    [job] = kit.submit(alice, JobType="MC", InputData=["/d/1"], Site=["B", "C"])
    assert queue_of(kit, job).sites == ("B",)
    [job] = kit.submit(alice, JobType="MC", InputData=["/d/1", "/d/2"])
    assert queue_of(kit, job).sites == ("B",)
    with pytest.raises(InvalidInput) as err:
        kit.submit(alice, JobType="MC", InputData=["/d/2"], Site=["A", "C"])
    assert err.value.message == (
        "the InputData is at B, not at the job's sites A, C; "
        "the input-data policy of job type 'MC' is 'require'"
    )
    with pytest.raises(InvalidInput, match="banned: B"):
        kit.submit(alice, JobType="MC", InputData=["/d/2"], BannedSites=["B"])
    with pytest.raises(InvalidInput, match="job 1: no site holds a replica"):
        kit.submit(alice, JobType="MC", Parameters=["/d/1", "/d/3"], InputData=["%s"])
    assert kit.count_jobs() == 3


def test_submission_with_missing_input_is_a_400(live_server: Any) -> None:
    reg = FileRegistration(lfn="/d/1", size=1, checksum="1", se="SE-A")
    catalog.register_files(live_server.services.ctx, ADMIN, [reg])
    with Client(live_server.url, live_server.admin_token) as client:
        with pytest.raises(ApiError) as err:
            client.submit(documents=[{"Executable": "/bin/true", "InputData": ["/d/1", "/d/404"]}])
        assert (err.value.status, err.value.message) == (
            400,
            "InputData not in the catalog: /d/404",
        )
        assert len(client.submit(documents=[{"Executable": "/bin/true", "InputData": "/d/1"}])) == 1
