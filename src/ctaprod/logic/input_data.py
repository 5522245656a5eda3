"""Jobs with input data: check that InputData is catalogued and find where its replicas are.

At submission every InputData LFN (and ``LFN:`` InputSandbox entry) must be in the catalog
(one lookup for the whole submission, whatever the number of jobs). The sites holding
replicas (each replica's SE -> the SE's ``site``) shape the job's task queue according to
the input-data policy of its job type (``settings.data.input_data_policy``): ``require``
restricts the job's sites to them, ``prefer`` (the default) records them so that the
matcher hands the job to pilots there first while others may still take it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from sqlalchemy import Connection

from ctaprod.core.catalog import FileInfo
from ctaprod.core.errors import InvalidInput
from ctaprod.core.jobs import LFN_PREFIX, JobDescription
from ctaprod.core.matching import Requirements
from ctaprod.logic import catalog
from ctaprod.logic.context import Context

REQUIRE, PREFER = "require", "prefer"
POLICIES = frozenset({REQUIRE, PREFER})
SHOWN = 20  # missing LFNs named in an error message


def policy_of(ctx: Context, job_type: str) -> str:
    """The input-data policy of a job type: 'require' or 'prefer' (the default)."""
    policy = ctx.settings.data.input_data_policy.get(job_type, PREFER).lower()
    return policy if policy in POLICIES else PREFER


def replica_sites(
    ctx: Context, lfns: Collection[str], *, strict: bool, conn: Connection | None = None
) -> dict[str, frozenset[str]]:
    """The sites holding a replica of each LFN (one catalog lookup; in ``conn``'s transaction
    when given).

    ``strict``: LFNs missing from the catalog raise ``InvalidInput`` naming them; otherwise
    they are left out of the answer.
    """
    if not lfns:
        return {}
    wanted, step = sorted(lfns), ctx.settings.data.max_lfns_per_call
    files: dict[str, FileInfo] = {}
    for i in range(0, len(wanted), step):
        files.update(catalog.get_files(ctx, wanted[i : i + step], conn))
    missing = sorted(set(lfns) - set(files))
    if missing and strict:
        more = f" (and {len(missing) - SHOWN} more)" if len(missing) > SHOWN else ""
        raise InvalidInput(
            f"InputData not in the catalog: {', '.join(missing[:SHOWN])}{more}",
            attribute="InputData",
            missing=missing[:1000],
        )
    site_of: dict[str, str] = {}
    out = {}
    for lfn, info in files.items():
        sites = set()
        for se in info.replicas:
            if se not in site_of:
                try:
                    site_of[se] = ctx.settings.storage_element(se).site
                except KeyError:  # an SE no longer configured holds no usable replica
                    site_of[se] = ""
            if site_of[se]:
                sites.add(site_of[se])
        out[lfn] = frozenset(sites)
    return out


def sandbox_lfns(desc: JobDescription) -> list[str]:
    """The catalogued files named in InputSandbox (``LFN:`` entries)."""
    return [s[len(LFN_PREFIX) :] for s in desc.input_sandbox if s.upper().startswith(LFN_PREFIX)]


def best_sites(lfns: Sequence[str], where: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    """The sites holding replicas of all ``lfns``; when none holds all, those holding the
    most of them."""
    counts = Counter(site for lfn in set(lfns) for site in where.get(lfn, ()))
    if not counts:
        return ()
    top = max(counts.values())
    return tuple(sorted(s for s, n in counts.items() if n == top))


def job_requirements(
    ctx: Context,
    items: Sequence[tuple[JobDescription, str, str]],
    *,
    strict: bool = True,
    conn: Connection | None = None,
) -> list[Requirements]:
    """The task-queue requirements of jobs (description, owner, group), input data included;
    the catalog is read in ``conn``'s transaction when given.

    ``strict`` (submission): missing input files and a 'require' job whose sites hold none of
    its data raise ``InvalidInput``. Not strict (rescheduling): the job is queued with what
    is known.
    """
    lfns = {lfn for d, _, _ in items for lfn in (*d.input_data, *sandbox_lfns(d))}
    where = replica_sites(ctx, lfns, strict=strict, conn=conn)
    memo: dict[tuple[str, ...], tuple[str, ...]] = {}  # parametric jobs share their inputs
    out = []
    for index, (desc, owner, group) in enumerate(items):
        if not desc.input_data:
            out.append(Requirements.of_job(desc, owner, group))
            continue
        key = tuple(desc.input_data)
        if key not in memo:
            memo[key] = best_sites(key, where)
        data_sites = [s for s in memo[key] if s not in desc.banned_sites]
        if policy_of(ctx, desc.job_type) == PREFER:
            out.append(Requirements.of_job(desc, owner, group, data_sites=data_sites))
            continue
        sites = [s for s in data_sites if not desc.sites or s in desc.sites]
        if not sites:
            if strict:
                raise InvalidInput(_no_site(index, len(items), desc, memo[key]))
            sites = list(desc.sites)  # run where the job said; the wrapper fetches the data
        out.append(Requirements.of_job(desc, owner, group, sites=sites))
    return out


def _no_site(index: int, count: int, desc: JobDescription, holders: Sequence[str]) -> str:
    where = f"job {index}: " if count > 1 else ""
    policy = f"the input-data policy of job type {desc.job_type!r} is 'require'"
    if not holders:
        return f"{where}no site holds a replica of the InputData ({policy})"
    text = f"{where}the InputData is at {', '.join(holders)}"
    if desc.sites:
        text += f", not at the job's sites {', '.join(desc.sites)}"
    if desc.banned_sites:
        text += f" (banned: {', '.join(desc.banned_sites)})"
    return f"{text}; {policy}"
