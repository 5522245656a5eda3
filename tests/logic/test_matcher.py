"""The matcher (ctaprod.logic.matcher): requirements, site mask, priorities, fair share, and
atomic claims under real concurrency (threads, then separate OS processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.errors import Forbidden, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.jobdesc import substitute_job_id
from ctaprod.logic import admin, runtime
from ctaprod.logic import queries as Q
from tests.logic.conftest import Kit, user_identity

OPERATOR = user_identity("op", "ctao_admin", frozenset({"Operator"}))


def test_match_hands_out_the_job(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice, Arguments="--id %j", OutputSandbox=["out_%j.txt"], CPUTime=1000)
    pilot = kit.pilot()
    m = kit.match(pilot)
    assert m.job_id == job_id
    assert (m.owner, m.owner_group, m.attempt) == ("alice", "ctao_user", 0)
    assert m.description.arguments == f"--id {job_id}"
    assert m.description.output_sandbox == [f"out_{job_id}.txt"]
    assert m.heartbeat_interval == kit.ctx.settings.jobs.heartbeat_interval
    row = kit.row(job_id)
    assert (row["status"], row["pilot_id"], row["site"]) == ("Matched", pilot.pilot_id, pilot.site)
    history = Q.job_history(kit.ctx, alice, job_id)
    assert (history[-1].status.value, history[-1].source) == (
        "Matched",
        f"Matcher:{pilot.pilot_id}",
    )
    # The stored description keeps the placeholder; only the pilot's copy is filled in.
    stored = Q.job_detail(kit.ctx, alice, job_id).description
    assert stored.arguments == "--id %j"
    assert substitute_job_id(stored, job_id) == m.description
    job = kit.job_ident(m)
    assert (job.job_id, job.pilot_id, job.attempt, job.user) == (job_id, pilot.pilot_id, 0, "alice")
    assert kit.match(pilot) is None


def test_only_a_registered_running_pilot_gets_jobs(kit: Kit, alice: Identity) -> None:
    kit.submit(alice)
    pilot = kit.pilot()
    with pytest.raises(Forbidden):
        kit.matcher.match(alice, pilot.pilot_id, pilot.resource())
    # A session token matches for its own pilot only; a pilot id with no record is unknown.
    with pytest.raises(Forbidden, match="session token"):
        kit.matcher.match(pilot.ident, 987_654, pilot.resource())
    with pytest.raises(NotFound):
        kit.matcher.match(replace(pilot.ident, pilot_id=987_654), 987_654, pilot.resource())
    runtime.pilot_finished(kit.ctx, pilot.ident, pilot.pilot_id, True, "done", None, 0)
    with pytest.raises(Forbidden, match="not Running"):
        kit.match(pilot)


def test_site_requirements(kit: Kit, alice: Identity) -> None:
    [at_a] = kit.submit(alice, Site="A")
    [at_a_or_b] = kit.submit(alice, Site=["A", "B"])
    [not_b] = kit.submit(alice, BannedSites=["B"])
    assert sorted(kit.drain(kit.pilot("C"))) == [not_b]
    assert sorted(kit.drain(kit.pilot("B"))) == [at_a_or_b]
    assert sorted(kit.drain(kit.pilot("A"))) == [at_a]


def test_platform_tags_processors_memory(kit: Kit, alice: Identity) -> None:
    [el9] = kit.submit(alice, Platform="el9")
    [gpu] = kit.submit(alice, Tags=["GPU"])
    [four] = kit.submit(alice, NumberOfProcessors=4)
    [big] = kit.submit(alice, MaxRAM=8000)
    pilot = kit.pilot()
    assert kit.drain(pilot, platform="el8", processors=2, memory_mb=4096) == []
    assert kit.drain(pilot, platform="el9") == [el9]
    assert kit.drain(pilot, tags=["GPU"]) == [gpu]
    assert kit.drain(pilot, processors=3, memory_mb=16000) == [big]
    assert kit.drain(pilot, processors=8) == [four]


def test_cpu_time_segment(kit: Kit, alice: Identity) -> None:
    [short] = kit.submit(alice, CPUTime=300)
    [hour] = kit.submit(alice, CPUTime=3000)  # segment 3600
    pilot = kit.pilot()
    assert kit.drain(pilot, cpu_time_left=359) == []
    assert kit.drain(pilot, cpu_time_left=3599) == [short]
    assert kit.drain(pilot, cpu_time_left=3600) == [hour]


def test_job_types_and_groups_a_pilot_accepts(kit: Kit, alice: Identity) -> None:
    kit.group("ctao_prod2")
    [mc] = kit.submit(alice, JobType="MCSimulation")
    [user] = kit.submit(alice)
    [prod] = kit.submit(kit.user("pm", "ctao_prod2"))
    pilot = kit.pilot()
    assert kit.drain(pilot, job_types=["MCSimulation"]) == [mc]
    assert kit.drain(pilot, owner_groups=["ctao_prod2"]) == [prod]
    assert kit.drain(pilot) == [user]


def test_site_mask(kit: Kit, alice: Identity) -> None:
    ids = kit.submit(alice, count=2)
    admin.set_site(kit.ctx, OPERATOR, "LCG.Bad.org", "Banned", "storage down")
    kit.matcher.invalidate()
    bad, good = kit.pilot("LCG.Bad.org"), kit.pilot("LCG.Good.org")
    assert kit.match(bad) is None
    assert kit.match(good) is not None
    # Explicitly asking for the banned site does not get around the mask.
    [pinned] = kit.submit(alice, Site="LCG.Bad.org")
    assert kit.match(bad) is None
    admin.set_site(kit.ctx, OPERATOR, "LCG.Bad.org", "Active", "")
    kit.matcher.invalidate()
    assert sorted(kit.drain(bad)) == sorted([ids[1], pinned])
    sites = {s.name: s for s in admin.list_sites(kit.ctx)}
    assert sites["LCG.Bad.org"].status == "Active"
    assert sites["LCG.Bad.org"].updated_by == "op"


def test_site_mask_changes_need_operator_and_a_reason(kit: Kit, alice: Identity) -> None:
    with pytest.raises(Forbidden):
        admin.set_site(kit.ctx, alice, "X", "Banned", "why")
    with pytest.raises(InvalidInput, match="needs a reason"):
        admin.set_site(kit.ctx, OPERATOR, "X", "Banned", "")
    with pytest.raises(InvalidInput):
        admin.set_site(kit.ctx, OPERATOR, "X", "Closed", "why")


def test_priorities_inside_a_users_queue(kit: Kit, alice: Identity) -> None:
    order = [1, 5, 3, 5, 0, 10]
    ids = [kit.submit(alice, Priority=p)[0] for p in order]
    matched = kit.drain(kit.pilot())
    # Highest priority first, then oldest first.
    expected = [j for _, j in sorted(zip(order, ids, strict=True), key=lambda x: (-x[0], x[1]))]
    assert matched == expected


def test_priority_across_queues_of_one_user(kit: Kit, alice: Identity) -> None:
    [low] = kit.submit(alice, Priority=1)
    [high] = kit.submit(alice, Priority=9, Tags=["GPU"])
    assert kit.drain(kit.pilot(), tags=["GPU"]) == [high, low]


def test_fair_share_between_groups(kit: Kit) -> None:
    kit.group("big", share=3)
    kit.group("small", share=1)
    big, small = kit.user("b1", "big"), kit.user("s1", "small")
    # The small group's user asks for a higher priority: it must not matter across groups.
    kit.submit(big, count=400)
    kit.submit(small, count=400, Priority=9)
    pilot = kit.pilot()
    owners = Counter(kit.match(pilot).owner for _ in range(400))
    # Binomial(400, 0.75): mean 300, sd 8.7; +-45 is > 5 sd, and far from 200 (no fair share).
    assert 255 <= owners["b1"] <= 345, owners
    assert owners["b1"] + owners["s1"] == 400


def test_fair_share_between_users_of_a_group(kit: Kit) -> None:
    kit.group("team", share=1)
    u1, u2 = kit.user("u1", "team"), kit.user("u2", "team")
    kit.submit(u1, count=300, Priority=10)  # priorities only order a user's own jobs
    kit.submit(u2, count=300, Priority=0)
    pilot = kit.pilot()
    owners = Counter(kit.match(pilot).owner for _ in range(300))
    # Binomial(300, 0.5): mean 150, sd 8.7.
    assert 105 <= owners["u1"] <= 195, owners


def test_a_group_without_jobs_does_not_block_others(kit: Kit) -> None:
    kit.group("idle", share=100)
    kit.group("busy", share=1)
    ids = kit.submit(kit.user("w", "busy"), count=5)
    assert sorted(kit.drain(kit.pilot())) == ids


def test_stale_snapshot_only_costs_a_retry(kit: Kit, alice: Identity, bob: Identity) -> None:
    kit.matcher.snapshot_seconds = 3600
    [a] = kit.submit(alice)
    [b] = kit.submit(bob, Tags=["T"])
    kit.matcher.snapshot()
    pilot = kit.pilot()
    # Another process takes alice's job behind this matcher's back.
    with kit.ctx.db.write() as conn:
        kit.ctx.queues.dequeue(conn, [a])
    assert kit.match(pilot, tags=["T"]).job_id == b
    assert kit.match(pilot, tags=["T"]) is None


# -- concurrency ----------------------------------------------------------------------------


def _match_all(kit: Kit, n_threads: int, **resource: Any) -> dict[int, list[int]]:
    pilots = [kit.pilot(f"LCG.T{i}.org") for i in range(n_threads)]
    got: dict[int, list[int]] = {p.pilot_id: [] for p in pilots}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(pilot: Any) -> None:
        try:
            barrier.wait()
            while (m := kit.match(pilot, **resource)) is not None:
                got[pilot.pilot_id].append(m.job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in pilots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    return got


def _assert_counters_exact(kit: Kit) -> None:
    """The task queue counters equal the queued jobs (none needed repair)."""
    with kit.ctx.db.read() as conn:
        assert kit.ctx.queues.check_counters(conn, repair=False) == []


@pytest.mark.parametrize("n_threads", [4, 8])
def test_threads_match_every_job_exactly_once(
    kit: Kit, alice: Identity, bob: Identity, n_threads: int
) -> None:
    ids = kit.submit(alice, count=120) + kit.submit(bob, count=80, Tags=["X"])
    kit.matcher.snapshot_seconds = 0.05
    got = _match_all(kit, n_threads, tags=["X"])  # resources that accept both queues
    matched = [j for jobs in got.values() for j in jobs]
    leftover = kit.drain(kit.pilot(), tags=["X"])
    assert leftover == []
    assert len(matched) == len(set(matched)) == 200
    assert sorted(matched) == sorted(ids)
    assert sum(1 for jobs in got.values() if jobs) >= 2  # the work was really shared
    _assert_counters_exact(kit)
    assert kit.matcher.snapshot().loads == {}
    for pilot_id, jobs in got.items():
        for job_id in jobs:
            row = kit.row(job_id)
            assert (row["status"], row["pilot_id"]) == ("Matched", pilot_id)


def test_threads_with_separate_matchers(kit: Kit, alice: Identity) -> None:
    """Like several API replicas in one process: each with its own matcher and snapshot."""
    from ctaprod.logic.matcher import Matcher

    ids = kit.submit(alice, count=200)
    pilots = [kit.pilot(f"S{i}") for i in range(6)]
    matchers = [Matcher(kit.ctx, kit.tokens, snapshot_seconds=10) for _ in pilots]
    for matcher in matchers:
        matcher.snapshot()  # every replica starts with the full (soon stale) picture
    got: list[list[int]] = [[] for _ in pilots]
    barrier = threading.Barrier(len(pilots))

    def work(i: int) -> None:
        barrier.wait()
        p = pilots[i]
        while (m := matchers[i].match(p.ident, p.pilot_id, p.resource())) is not None:
            got[i].append(m.job_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pilots))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    matched = [j for jobs in got for j in jobs]
    assert len(matched) == len(set(matched))
    assert sorted(matched) == ids
    _assert_counters_exact(kit)


WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from ctaprod.core.settings import Settings
    from ctaprod.core.matching import Resource
    from ctaprod.logic import runtime
    from ctaprod.server.services import build_services

    url, secret, state, token, name = sys.argv[1:6]
    svc = build_services(Settings(database_url=url, secret_key=secret, state_dir=Path(state)),
                         migrate_db=False)
    svc.matcher.snapshot_seconds = 0.05
    ident = svc.tokens.verify(token)
    reg = runtime.register_pilot(svc.ctx, svc.tokens, ident, name, name, "ce", "q")
    session = svc.tokens.verify(reg.session_token)
    print("ready", flush=True)
    sys.stdin.readline()
    got = []
    while (m := svc.matcher.match(session, reg.pilot_id, Resource(site=name))) is not None:
        got.append(m.job_id)
    print(json.dumps({"pilot_id": reg.pilot_id, "jobs": got}), flush=True)
    svc.ctx.db.dispose()
    """
)


def test_two_processes_match_every_job_exactly_once(
    kit: Kit, alice: Identity, tmp_path: Path
) -> None:
    ids = kit.submit(alice, count=200)
    settings = kit.ctx.settings
    token = kit._pilot_token.token
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                settings.db_url(),
                settings.secret_key,
                str(tmp_path / f"state{i}"),
                token,
                f"LCG.Proc{i}.org",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.stderr else "")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    matched = [j for r in results for j in r["jobs"]]
    assert len(matched) == len(set(matched)) == 200
    assert sorted(matched) == ids
    for r in results:
        for job_id in r["jobs"]:
            assert kit.row(job_id)["pilot_id"] == r["pilot_id"]
    _assert_counters_exact(kit)
    with kit.ctx.db.read() as conn:
        assert kit.ctx.queues.loads(conn) == []


def test_matching_races_with_kills_without_deadlocks(kit: Kit, alice: Identity) -> None:
    """Kills lock the job row then the queue row; matching must not take them the other way
    round and wait (a deadlock on MariaDB/PostgreSQL) nor hand out a killed job."""
    import random

    from ctaprod.core.errors import InvalidTransition
    from ctaprod.logic import jobs as job_logic

    ids = kit.submit(alice, count=240)
    kit.matcher.snapshot_seconds = 0.05
    pilots = [kit.pilot(f"LCG.R{i}.org") for i in range(4)]
    errors: list[str] = []
    matched: list[int] = []
    killed: list[int] = []
    done = threading.Event()

    def match(pilot: Any) -> None:
        try:
            while (m := kit.match(pilot)) is not None:
                matched.append(m.job_id)
        except BaseException as exc:
            errors.append(f"match: {exc!r}")
        finally:
            done.set()

    def kill(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        for job_id in order:
            if done.is_set():
                return
            try:
                job_logic.kill_jobs(kit.ctx, alice, [job_id])
                killed.append(job_id)
            except InvalidTransition:
                pass  # killed by the other killer already
            except BaseException as exc:
                errors.append(f"kill: {exc!r}")

    threads = [threading.Thread(target=match, args=(p,)) for p in pilots]
    threads += [threading.Thread(target=kill, args=(seed,)) for seed in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(matched) == len(set(matched))
    history = {j: [h.status.value for h in Q.job_history(kit.ctx, alice, j)] for j in ids}
    for job_id in ids:
        statuses = history[job_id]
        assert statuses.count("Matched") == (1 if job_id in matched else 0), statuses
        if "Killed" in statuses and "Matched" in statuses:
            assert statuses.index("Matched") < statuses.index("Killed")  # killed while running
    # Whatever is still waiting is still in its queue, and nothing else is.
    with kit.ctx.db.read() as conn:
        from sqlalchemy import select

        from ctaprod.db.tables import tq_jobs

        queued = {r[0] for r in conn.execute(select(tq_jobs.c.job_id))}
    waiting = {j for j in ids if kit.row(j)["status"] == "Waiting"}
    assert queued == waiting
    _assert_counters_exact(kit)
    with kit.ctx.db.read() as conn:
        assert sum(ld.waiting for ld in kit.ctx.queues.loads(conn)) == len(waiting)


def test_choose_tolerates_a_queue_dropped_by_another_request(services: Any) -> None:
    """A concurrent claim may pop an emptied queue from the shared snapshot between the
    eligibility scan and the choice (seen as a KeyError under load on MariaDB)."""
    import time as _time

    from ctaprod.core.matching import Requirements
    from ctaprod.db.taskqueues import QueueLoad
    from ctaprod.logic.matcher import Snapshot

    req = Requirements(owner="alice", owner_group="g", job_type="User", cpu_segment=360)
    other = Requirements(owner="alice", owner_group="g", job_type="MC", cpu_segment=360)
    snap = Snapshot(
        _time.monotonic(),
        {1: req, 2: other},
        {1: QueueLoad(1, 5, 3), 2: QueueLoad(2, 5, 1)},
        frozenset(),
        {"g": 1.0},
    )
    matcher = services.matcher
    assert matcher.choose([1, 2], snap) == 1  # the higher priority
    del snap.loads[1]  # dropped meanwhile
    assert matcher.choose([1, 2], snap) == 2
    del snap.loads[2]
    assert matcher.choose([1, 2], snap) in (1, 2)


def test_job_id_is_filled_in_by_the_one_core_rule(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(
        alice,
        Environment={"OUT": "out_%j"},
        ExecutionEnvironment=["RUN=run%j"],
        OutputMetadata={"field_%j": "value_%j"},
        RunLabel="label_%j",
    )
    m = kit.match(kit.pilot())
    assert m.description.environment == {"OUT": f"out_{job_id}"}
    assert m.description.execution_environment == {"RUN": f"run{job_id}"}
    # Names are never rewritten, values are (the matcher once replaced %j in the raw JSON).
    assert m.description.output_metadata == {"field_%j": f"value_{job_id}"}
    assert m.description.custom_attributes == {"RunLabel": f"label_{job_id}"}
    stored = Q.job_detail(kit.ctx, alice, job_id)
    assert substitute_job_id(stored.description, job_id) == m.description
    # The custom attribute is a job parameter, with the ID known at submission.
    assert stored.parameters["RunLabel"] == f"label_{job_id}"


def test_grid_ce_jobs_go_to_that_ce_only(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice, GridCE="ce2.test.org", MinNumberOfProcessors=2)
    pilot = kit.pilot()
    # Same site, same snapshot: the CE alone decides (it is part of the resource's shape).
    assert kit.match(pilot, ce="ce1.test.org", processors=4) is None
    assert kit.match(pilot, ce="ce2.test.org", processors=1) is None
    m = kit.match(pilot, ce="ce2.test.org", processors=4)
    assert m is not None
    assert m.job_id == job_id


def test_a_batch_is_served_in_one_transaction_each_request_on_its_own(
    kit: Kit, alice: Identity
) -> None:
    """match_many: one commit for the whole batch; every pilot gets its own job (recorded
    against it), a refused request gets its own error and costs the others nothing."""
    from sqlalchemy import event

    from ctaprod.logic.matcher import MatchRequest

    ids = kit.submit(alice, count=5)
    good = [kit.pilot(f"LCG.B{i}.org") for i in range(3)]
    stopped = kit.pilot("LCG.Stopped.org")
    runtime.pilot_finished(kit.ctx, stopped.ident, stopped.pilot_id, True, "done", None, 0)
    reqs = [MatchRequest(p.ident, p.pilot_id, p.resource()) for p in good]
    reqs.insert(1, MatchRequest(stopped.ident, stopped.pilot_id, stopped.resource()))
    reqs.append(MatchRequest(good[0].ident, 987_654, good[0].resource()))  # not its own id
    reqs.append(MatchRequest(alice, good[1].pilot_id, good[1].resource()))  # not a pilot token
    commits: list[int] = []
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(kit.ctx.db.engine, "commit", listener)
    try:
        out = kit.matcher.match_many(reqs)
    finally:
        event.remove(kit.ctx.db.engine, "commit", listener)
    assert len(commits) == 1
    assert isinstance(out[1], Forbidden)
    assert "not Running" in str(out[1])
    assert isinstance(out[4], Forbidden)  # another pilot's id
    assert "session token" in str(out[4])
    assert isinstance(out[5], Forbidden)
    assert "pilot token" in str(out[5])
    served = [out[0], out[2], out[3]]
    job_ids = [m.job_id for m in served]  # type: ignore[union-attr]
    assert len(set(job_ids)) == 3
    assert set(job_ids) <= set(ids)
    for pilot, m in zip(good, served, strict=True):
        row = kit.row(m.job_id)  # type: ignore[union-attr]
        assert (row["status"], row["pilot_id"], row["site"]) == (
            "Matched",
            pilot.pilot_id,
            pilot.site,
        )
        history = Q.job_history(kit.ctx, alice, m.job_id)  # type: ignore[union-attr]
        assert history[-1].source == f"Matcher:{pilot.pilot_id}"
        assert kit.job_ident(m).pilot_id == pilot.pilot_id
    # Two jobs left, three requests: two are served, the third gets None.
    again = kit.matcher.match_many([MatchRequest(p.ident, p.pilot_id, p.resource()) for p in good])
    assert sorted(m is None for m in again) == [False, False, True]
    _assert_counters_exact(kit)


def test_batched_matching_races_with_kills(kit: Kit, alice: Identity) -> None:
    """Batches of three pilots' requests in two threads while two threads kill: no job
    handed out twice or after its kill, queues and counters exact afterwards."""
    import random

    from ctaprod.core.errors import InvalidTransition
    from ctaprod.logic import jobs as job_logic
    from ctaprod.logic.matcher import MatchRequest

    ids = kit.submit(alice, count=180)
    kit.matcher.snapshot_seconds = 0.05
    pilots = [kit.pilot(f"LCG.R{i}.org") for i in range(6)]
    errors: list[str] = []
    matched: list[int] = []
    done = threading.Event()

    def match(batch: list[Any]) -> None:
        reqs = [MatchRequest(p.ident, p.pilot_id, p.resource()) for p in batch]
        try:
            while True:
                found = kit.matcher.match_many(reqs)
                errors.extend(repr(m) for m in found if isinstance(m, Exception))
                got = [m.job_id for m in found if m is not None and not isinstance(m, Exception)]
                matched.extend(got)
                if not got:
                    return
        except BaseException as exc:
            errors.append(f"match: {exc!r}")
        finally:
            done.set()

    def kill(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        for job_id in order:
            if done.is_set():
                return
            try:
                job_logic.kill_jobs(kit.ctx, alice, [job_id])
            except InvalidTransition:
                pass
            except BaseException as exc:
                errors.append(f"kill: {exc!r}")

    threads = [threading.Thread(target=match, args=(pilots[i::2],)) for i in range(2)]
    threads += [threading.Thread(target=kill, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(matched) == len(set(matched))
    for job_id in ids:
        statuses = [h.status.value for h in Q.job_history(kit.ctx, alice, job_id)]
        assert statuses.count("Matched") == (1 if job_id in matched else 0), statuses
        if "Killed" in statuses and "Matched" in statuses:
            assert statuses.index("Matched") < statuses.index("Killed")
    _assert_counters_exact(kit)


def test_the_batcher_serves_concurrent_requests_from_an_event_loop(
    kit: Kit, alice: Identity
) -> None:
    """api.batching: concurrent awaits each get their own outcome (distinct jobs, None when
    none is left, a refusal raised to its own caller); close() stops the threads."""
    import asyncio

    from ctaprod.api.batching import MatchBatcher

    ids = kit.submit(alice, count=10)
    pilots = [kit.pilot(f"LCG.A{i}.org") for i in range(3)]
    stopped = kit.pilot("LCG.Stopped.org")
    runtime.pilot_finished(kit.ctx, stopped.ident, stopped.pilot_id, True, "done", None, 0)
    sizes: list[int] = []
    batcher = MatchBatcher(kit.matcher, threads=2, max_batch=4)
    serve = kit.matcher.match_many

    def counting(reqs: Any) -> Any:
        sizes.append(len(reqs))
        return serve(reqs)

    kit.matcher.match_many = counting  # type: ignore[method-assign]

    async def ask(p: Any) -> Any:
        try:
            return await batcher.match(p.ident, p.pilot_id, p.resource())
        except Exception as exc:
            return exc

    async def main() -> list[Any]:
        asks = [ask(pilots[i % 3]) for i in range(12)] + [ask(stopped)]
        return await asyncio.gather(*asks)

    try:
        out = asyncio.run(main())
    finally:
        batcher.close()
    assert isinstance(out[-1], Forbidden)
    found = [m.job_id for m in out[:-1] if m is not None]
    assert sorted(found) == sorted(ids)
    assert sum(m is None for m in out[:-1]) == 2
    assert sum(sizes) == 13
    assert max(sizes) <= 4
    assert all(not t.is_alive() for t in batcher._workers)


def test_jobs_of_a_disabled_user_or_a_left_group_stay_waiting(
    kit: Kit, alice: Identity, bob: Identity
) -> None:
    # Their job token would be refused at its first use: the job is not handed out at all.
    [mine] = kit.submit(alice)
    [his] = kit.submit(bob)
    admin.set_user_enabled(kit.ctx, kit.tokens, "alice", False)
    kit.matcher.invalidate()
    pilot = kit.pilot()
    assert kit.drain(pilot) == [his]
    admin.set_user_enabled(kit.ctx, kit.tokens, "alice", True)
    kit.matcher.invalidate()
    assert kit.drain(pilot) == [mine]
    [again] = kit.submit(alice)
    admin.remove_member(kit.ctx, kit.tokens, "alice", alice.group)
    kit.matcher.invalidate()
    assert kit.match(pilot) is None
    admin.add_member(kit.ctx, kit.tokens, "alice", alice.group)
    kit.matcher.invalidate()
    assert kit.drain(pilot) == [again]
