"""Tests for ctaprod.core.matching: task-queue requirements and queue/resource eligibility."""

from __future__ import annotations

import pytest

from ctaprod.core.jobs import JobDescription
from ctaprod.core.matching import (
    CPU_SEGMENTS,
    MULTI_PROCESSOR_TAG,
    Requirements,
    Resource,
    cpu_segment,
    eligible,
    memory_tag,
    processor_tag,
)


def desc(**fields: object) -> JobDescription:
    return JobDescription.model_validate({"Executable": "x", **fields})


def req(**fields: object) -> Requirements:
    return Requirements.of_job(desc(**fields), "alice", "ctao_user")


def fits(r: Requirements, res: Resource, banned: frozenset[str] = frozenset()) -> bool:
    return eligible(r, res, res.all_tags(), banned)


@pytest.mark.parametrize(
    ("cpu", "segment"),
    [
        (1, 360),
        (360, 360),
        (361, 1800),
        (3600, 3600),
        (3601, 6 * 3600),
        (86400, 86400),
        (7 * 86400, 7 * 86400),
        (7 * 86400 + 1, 7 * 86400 + 1),
    ],
)
def test_cpu_segment(cpu: int, segment: int) -> None:
    assert cpu_segment(cpu) == segment
    assert cpu_segment(cpu) >= cpu


def test_segments_are_sorted() -> None:
    assert list(CPU_SEGMENTS) == sorted(CPU_SEGMENTS)


def test_tags() -> None:
    assert processor_tag(8) == "8Processors"
    assert memory_tag(1) == "1GB"
    assert memory_tag(1024) == "1GB"
    assert memory_tag(1025) == "2GB"


def test_requirements_of_job() -> None:
    r = req(
        CPUTime=1000,
        Site=["B", "A", "A"],
        BannedSites=["C", "A"],
        Platform="el9",
        Tags=["GPU"],
        NumberOfProcessors=4,
        MaxRAM=3000,
        JobType="MCSimulation",
    )
    assert r.cpu_segment == 1800
    assert r.sites == ("A", "B")
    assert r.banned_sites == ("C",)  # a site both wanted and banned counts as wanted
    assert r.platform == "el9"
    assert r.job_type == "MCSimulation"
    assert r.tags == tuple(sorted({"GPU", "4Processors", MULTI_PROCESSOR_TAG, "3GB"}))


def test_single_processor_job_has_no_derived_tags() -> None:
    assert req().tags == ()


def test_key_identifies_the_requirements() -> None:
    assert req(CPUTime=100).key() == req(CPUTime=200).key()  # same segment
    assert req(CPUTime=100).key() != req(CPUTime=1000).key()
    assert req(Site="A").key() != req(Site="B").key()
    assert req(Tags=["x", "y"]).key() == req(Tags=["y", "x"]).key()
    other_owner = Requirements.of_job(desc(), "bob", "ctao_user")
    assert other_owner.key() != req().key()
    assert len(req().key()) == 40


def test_resource_tags() -> None:
    res = Resource(site="S", processors=4, memory_mb=2500, tags=["GPU"])
    assert res.all_tags() == {
        "GPU",
        "1Processors",
        "2Processors",
        "3Processors",
        "4Processors",
        MULTI_PROCESSOR_TAG,
        "1GB",
        "2GB",
    }
    assert MULTI_PROCESSOR_TAG not in Resource(site="S").all_tags()


def test_anything_fits_an_unconstrained_job() -> None:
    assert fits(req(CPUTime=100), Resource(site="ANY.site", cpu_time_left=360))


def test_site_requirements() -> None:
    assert fits(req(Site=["A", "B"]), Resource(site="B"))
    assert not fits(req(Site=["A", "B"]), Resource(site="C"))
    assert not fits(req(BannedSites=["C"]), Resource(site="C"))
    assert fits(req(BannedSites=["C"]), Resource(site="D"))


def test_site_mask() -> None:
    assert not fits(req(), Resource(site="A"), banned=frozenset({"A"}))
    assert not fits(req(Site="A"), Resource(site="A"), banned=frozenset({"A"}))
    assert fits(req(), Resource(site="B"), banned=frozenset({"A"}))


def test_cpu_time() -> None:
    r = req(CPUTime=4000)  # segment 6h
    assert not fits(r, Resource(site="S", cpu_time_left=6 * 3600 - 1))
    assert fits(r, Resource(site="S", cpu_time_left=6 * 3600))


def test_platform() -> None:
    assert fits(req(Platform="el9"), Resource(site="S", platform="el9"))
    assert not fits(req(Platform="el9"), Resource(site="S", platform="el8"))
    assert not fits(req(Platform="el9"), Resource(site="S"))
    assert fits(req(), Resource(site="S", platform="el8"))


def test_tags_processors_and_memory() -> None:
    assert not fits(req(Tags=["GPU"]), Resource(site="S"))
    assert fits(req(Tags=["GPU"]), Resource(site="S", tags=["GPU", "other"]))
    assert not fits(req(NumberOfProcessors=4), Resource(site="S", processors=2))
    assert fits(req(NumberOfProcessors=4), Resource(site="S", processors=8))
    assert not fits(req(MaxRAM=4096), Resource(site="S", memory_mb=3000))
    assert fits(req(MaxRAM=4096), Resource(site="S", memory_mb=4096))
    assert fits(req(MaxRAM=100), Resource(site="S", memory_mb=1024))


def test_job_types_and_groups_offered_by_the_resource() -> None:
    r = req(JobType="MCSimulation")
    assert fits(r, Resource(site="S"))
    assert fits(r, Resource(site="S", job_types=["MCSimulation", "User"]))
    assert not fits(r, Resource(site="S", job_types=["User"]))
    assert fits(r, Resource(site="S", owner_groups=["ctao_user"]))
    assert not fits(r, Resource(site="S", owner_groups=["ctao_prod"]))


def test_requirements_survive_json() -> None:
    r = req(Site=["A"], Tags=["GPU"], NumberOfProcessors=2)
    assert Requirements.model_validate_json(r.model_dump_json()) == r


# -- DIRAC's processor ranges, MinRAM and GridCE --------------------------------------------


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ({"NumberOfProcessors": 4}, {"4Processors", MULTI_PROCESSOR_TAG}),
        ({"MinNumberOfProcessors": 2}, {"2Processors", MULTI_PROCESSOR_TAG}),
        ({"MinNumberOfProcessors": 1, "MaxNumberOfProcessors": 8}, {MULTI_PROCESSOR_TAG}),
        ({"MaxNumberOfProcessors": 1}, set()),
        ({"MinRAM": 3000, "MaxRAM": 8000}, {"3GB"}),
        ({"MaxRAM": 8000}, {"8GB"}),
    ],
)
def test_processor_and_memory_tags_as_dirac_derives_them(
    fields: dict[str, object], tags: set[str]
) -> None:
    assert set(req(**fields).tags) == tags


def test_processor_range_matches_resources_with_enough_processors() -> None:
    ranged = req(MinNumberOfProcessors=2, MaxNumberOfProcessors=8)
    assert not fits(ranged, Resource(site="S", processors=1))
    assert fits(ranged, Resource(site="S", processors=2))
    at_least_4 = req(MinNumberOfProcessors=4)
    assert not fits(at_least_4, Resource(site="S", processors=2))
    assert fits(at_least_4, Resource(site="S", processors=16))


def test_min_ram_is_what_a_resource_must_offer() -> None:
    job = req(MinRAM=3000, MaxRAM=16000)
    assert not fits(job, Resource(site="S", memory_mb=2048))
    assert fits(job, Resource(site="S", memory_mb=4096))


def test_grid_ce_restricts_the_computing_element() -> None:
    job = req(GridCE=["ce1.org", "ce2.org"])
    assert job.ces == ("ce1.org", "ce2.org")
    assert fits(job, Resource(site="S", ce="ce2.org"))
    assert not fits(job, Resource(site="S", ce="ce3.org"))
    assert not fits(job, Resource(site="S"))
    assert fits(req(), Resource(site="S", ce="ce3.org"))
    # Queues of jobs without GridCE keep their key; a GridCE makes another queue.
    assert req(GridCE="ce1.org").key() != req().key()
