"""Task-queue requirements and the pure part of matching: which queue fits which resource.

Jobs with identical requirements share a task queue. A pilot describes its resource; a queue
is eligible when every requirement of the queue is satisfied by the resource.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Sequence
from typing import Self

from pydantic import BaseModel, Field

from ctaprod.core.jobs import JobDescription

# CPU-time segments (seconds): a job's CPU time is rounded up to the next segment so that
# jobs of similar length share a queue. A resource with T seconds left matches segments <= T.
CPU_SEGMENTS = (360, 1800, 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400)
MULTI_PROCESSOR_TAG = "MultiProcessor"


def cpu_segment(cpu_time: int) -> int:
    index = bisect.bisect_left(CPU_SEGMENTS, cpu_time)
    return CPU_SEGMENTS[index] if index < len(CPU_SEGMENTS) else cpu_time


def processor_tag(n: int) -> str:
    return f"{n}Processors"


def memory_tag(mb: int) -> str:
    return f"{-(-mb // 1024)}GB"


class Requirements(BaseModel):
    """What a waiting job needs; the key of its task queue."""

    model_config = {"frozen": True}

    owner: str
    owner_group: str
    job_type: str
    cpu_segment: int
    platform: str = ""
    sites: tuple[str, ...] = ()
    banned_sites: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # Sites holding replicas of the input data (policy 'prefer'): pilots there take these
    # queues first; others still may.
    data_sites: tuple[str, ...] = ()
    # The computing elements the jobs may run on (the JDL's GridCE; empty: any).
    ces: tuple[str, ...] = ()

    @classmethod
    def of_job(
        cls,
        desc: JobDescription,
        owner: str,
        owner_group: str,
        *,
        sites: Sequence[str] | None = None,
        data_sites: Sequence[str] = (),
    ) -> Self:
        """The requirements of a job; ``sites`` replaces the job's Site list (input-data
        policy 'require'), ``data_sites`` are the preferred sites (policy 'prefer')."""
        tags = set(desc.tags)
        # DIRAC's tags: at least N processors is "NProcessors" + MultiProcessor; a job that
        # may use more than one (or any number) needs a MultiProcessor resource.
        fewest, most = desc.processor_range()
        if fewest > 1:
            tags.add(processor_tag(fewest))
            tags.add(MULTI_PROCESSOR_TAG)
        if most is None or most > 1:
            tags.add(MULTI_PROCESSOR_TAG)
        if desc.memory_requirement_mb():
            tags.add(memory_tag(desc.memory_requirement_mb()))
        return cls(
            owner=owner,
            owner_group=owner_group,
            job_type=desc.job_type,
            cpu_segment=cpu_segment(desc.cpu_time),
            platform=desc.platform,
            sites=tuple(sorted(set(desc.sites if sites is None else sites))),
            banned_sites=tuple(sorted(set(desc.banned_sites) - set(desc.sites))),
            tags=tuple(sorted(tags)),
            data_sites=tuple(sorted(set(data_sites))),
            ces=tuple(sorted(set(desc.grid_ce))),
        )

    def key(self) -> str:
        """A stable digest of the requirements (the unique key of the task queue)."""
        data = self.model_dump()
        if not self.data_sites:  # keys of queues without input data stay as they were
            del data["data_sites"]
        if not self.ces:  # nor those of jobs without GridCE
            del data["ces"]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:40]


class Resource(BaseModel):
    """What a pilot offers when it asks for a job."""

    site: str = Field(min_length=1, max_length=128)
    ce: str = Field("", max_length=255)
    queue: str = Field("", max_length=255)
    platform: str = Field("", max_length=128)
    tags: list[str] = Field(default_factory=list, max_length=256)
    cpu_time_left: int = Field(86400, ge=0)
    memory_mb: int = Field(2048, ge=0)
    processors: int = Field(1, ge=1, le=1024)
    job_types: list[str] = Field(default_factory=list, max_length=64)
    owner_groups: list[str] = Field(default_factory=list, max_length=64)

    def all_tags(self) -> frozenset[str]:
        tags = set(self.tags)
        tags.update(processor_tag(n) for n in range(1, self.processors + 1))
        if self.processors > 1:
            tags.add(MULTI_PROCESSOR_TAG)
        tags.update(f"{g}GB" for g in range(1, self.memory_mb // 1024 + 1))
        return frozenset(tags)


def eligible(
    req: Requirements, res: Resource, tags: frozenset[str], banned: frozenset[str]
) -> bool:
    """True when a resource (with precomputed ``tags``) may run jobs of these requirements.

    ``banned`` is the site mask: sites that receive no jobs at all.
    """
    if res.site in banned:
        return False
    if req.sites and res.site not in req.sites:
        return False
    if res.site in req.banned_sites:
        return False
    if req.ces and res.ce not in req.ces:
        return False
    if req.cpu_segment > res.cpu_time_left:
        return False
    if req.platform and res.platform and req.platform != res.platform:
        return False
    if req.platform and not res.platform:
        return False
    if res.job_types and req.job_type not in res.job_types:
        return False
    if res.owner_groups and req.owner_group not in res.owner_groups:
        return False
    return set(req.tags) <= tags
