"""The matcher with input data: 'prefer' hands jobs to pilots at the replica sites first,
'require' only to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctaprod.core.identity import Identity
from ctaprod.core.settings import Settings
from tests.dm_helpers import data_settings
from tests.logic.conftest import Kit
from tests.logic.test_input_data import register


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return data_settings(db_url, tmp_path, {"MC": "require", "User": "prefer"})


def test_prefer_gives_the_job_to_the_replica_site_first(kit: Kit, alice: Identity) -> None:
    register(kit, {"/d/1": ["SE-B"]})
    plain = kit.submit(alice, count=5, Priority=5)  # better priority, no data
    [near_b] = kit.submit(alice, InputData=["/d/1"])
    # A pilot at B takes the job whose data is at B before the others.
    assert kit.drain(kit.pilot("B"))[0] == near_b
    assert kit.row(near_b)["site"] == "B"
    # Elsewhere the job is still eligible ('prefer' is no requirement).
    [near_b2] = kit.submit(alice, InputData=["/d/1"])
    assert kit.drain(kit.pilot("C")) == [near_b2]
    assert len(plain) == 5


def test_prefer_keeps_fair_share_among_local_queues(
    kit: Kit, alice: Identity, bob: Identity
) -> None:
    register(kit, {"/d/1": ["SE-A"], "/d/2": ["SE-A", "SE-B"]})
    ours = kit.submit(alice, InputData=["/d/1"]) + kit.submit(bob, InputData=["/d/2"])
    kit.submit(alice, count=3)
    pilot = kit.pilot("A")
    assert sorted(kit.drain(pilot)[:2]) == sorted(ours)


def test_require_keeps_the_job_at_the_replica_sites(kit: Kit, alice: Identity) -> None:
    register(kit, {"/d/1": ["SE-A", "SE-B"], "/d/2": ["SE-B2"]})
    [mc] = kit.submit(alice, JobType="MC", InputData=["/d/1", "/d/2"])
    assert kit.drain(kit.pilot("A")) == []
    assert kit.drain(kit.pilot("C")) == []
    assert kit.drain(kit.pilot("B")) == [mc]


def test_rescheduled_job_keeps_its_data_sites(kit: Kit, alice: Identity) -> None:
    from ctaprod.logic import jobs as job_logic

    register(kit, {"/d/1": ["SE-A"]})
    [mc] = kit.submit(alice, JobType="MC", InputData=["/d/1"])
    assert kit.drain(kit.pilot("A")) == [mc]
    job_logic.reschedule_jobs(kit.ctx, alice, [mc])
    kit.matcher.invalidate()
    assert kit.drain(kit.pilot("B")) == []
    assert kit.drain(kit.pilot("A")) == [mc]
