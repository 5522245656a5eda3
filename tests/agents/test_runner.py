"""The generic agent runner: once mode, interval and wake-ups, errors, replicas, heartbeats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ctaprod.agents.runner import AgentContext, AgentCycleError, AgentSpec, Heartbeat, Runner
from ctaprod.server.agents import agent_heartbeats, database_heartbeats, database_liveness


class Recorder:
    """An agent body that remembers its calls and can be told to fail."""

    def __init__(self, fail_on: set[int] | None = None, result: int | None = 1) -> None:
        self.calls: list[AgentContext] = []
        self.times: list[float] = []
        self.fail_on = fail_on or set()
        self.result = result
        self.called = threading.Event()

    def __call__(self, actx: AgentContext) -> int | None:
        self.calls.append(actx)
        self.times.append(time.monotonic())
        self.called.set()
        if len(self.calls) in self.fail_on:
            raise RuntimeError(f"cycle {len(self.calls)} broke")
        return self.result


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_once_runs_each_agent_once_in_order() -> None:
    order: list[str] = []
    beats: list[Heartbeat] = []

    def body(name: str) -> Callable[[AgentContext], int]:
        def run(actx: AgentContext) -> int:
            order.append(actx.name)
            assert (actx.replica, actx.replicas, actx.cycle) == (1, 3, 0)
            return len(order)

        return run

    runner = Runner(
        [AgentSpec("a", body("a"), 60), AgentSpec("b", body("b"), 60)],
        replica=1,
        replicas=3,
        heartbeat=beats.append,
        host="h1",
    )
    started = time.monotonic()
    runner.run(once=True)
    assert time.monotonic() - started < 1  # no sleeping in once mode
    assert order == ["a", "b"]
    assert [(b.name, b.replica, b.host, b.error, b.result) for b in beats] == [
        ("a", 1, "h1", "", 1),
        ("b", 1, "h1", "", 2),
    ]
    assert runner.stats["b"].cycles == 1
    assert runner.stats["b"].last_result == 2


def test_interval_wake_up_and_stop() -> None:
    rec = Recorder()
    runner = Runner([AgentSpec("slow", rec, interval=60)])
    runner.start()
    try:
        _until(lambda: len(rec.calls) == 1)
        time.sleep(0.2)
        assert len(rec.calls) == 1  # sleeping its 60 s interval
        runner.wake("slow")
        _until(lambda: len(rec.calls) == 2)
        assert rec.calls[1].cycle == 1
    finally:
        started = time.monotonic()
        runner.stop()
        assert runner.join(5)
    assert time.monotonic() - started < 2  # the stop cut the sleep short
    assert len(rec.calls) == 2


def test_short_interval_loops() -> None:
    rec = Recorder()
    runner = Runner([AgentSpec("fast", rec, interval=0.05)])
    runner.start()
    _until(lambda: len(rec.calls) >= 4)
    runner.stop()
    assert runner.join(5)
    gaps = [b - a for a, b in zip(rec.times, rec.times[1:], strict=False)]
    assert min(gaps) >= 0.04


def test_a_failing_cycle_is_recorded_and_the_loop_goes_on(caplog: Any) -> None:
    rec = Recorder(fail_on={2})
    beats: list[Heartbeat] = []
    runner = Runner([AgentSpec("flaky", rec, interval=0.01)], heartbeat=beats.append)
    runner.start()
    _until(lambda: len(rec.calls) >= 4)
    runner.stop()
    assert runner.join(5)
    stats = runner.stats["flaky"]
    assert stats.errors == 1
    assert stats.last_error == ""
    assert beats[1].error == "RuntimeError: cycle 2 broke"
    assert beats[1].result is None
    assert beats[0].error == beats[2].error == ""
    assert "cycle 1 failed" in caplog.text  # the cycle number counts from 0


def test_a_failing_heartbeat_sink_does_not_stop_the_agent() -> None:
    rec = Recorder()

    def broken(beat: Heartbeat) -> None:
        raise OSError("database away")

    runner = Runner([AgentSpec("x", rec, interval=0.01)], heartbeat=broken)
    runner.start()
    _until(lambda: len(rec.calls) >= 3)
    runner.stop()
    assert runner.join(5)


def test_external_stop_event_ends_run() -> None:
    stop = threading.Event()
    rec = Recorder()
    runner = Runner([AgentSpec("x", rec, interval=60), AgentSpec("y", Recorder(), 60)], stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    _until(lambda: len(rec.calls) == 1)
    stop.set()  # as a SIGTERM handler would
    thread.join(5)
    assert not thread.is_alive()


def test_shared_wake_event() -> None:
    wake = threading.Event()
    rec = Recorder()
    runner = Runner([AgentSpec("x", rec, interval=60, wake=wake)])
    runner.start()
    _until(lambda: len(rec.calls) == 1)
    wake.set()  # e.g. the API after a submission
    _until(lambda: len(rec.calls) == 2)
    runner.stop()
    assert runner.join(5)


def test_replicas_split_ids_and_names() -> None:
    mine: dict[int, list[int]] = {}
    names: dict[int, list[str]] = {}
    queues = [f"queue-{i}" for i in range(20)]

    def body(actx: AgentContext) -> int:
        mine[actx.replica] = [i for i in range(10) if actx.mine(i)]
        names[actx.replica] = [q for q in queues if actx.mine_name(q)]
        return 0

    for replica in (0, 1):
        Runner([AgentSpec("p", body, 1)], replica=replica, replicas=2).run(once=True)
    assert mine == {0: [0, 2, 4, 6, 8], 1: [1, 3, 5, 7, 9]}
    assert sorted(names[0] + names[1]) == sorted(queues)
    assert names[0]
    assert names[1]
    assert not set(names[0]) & set(names[1])


@pytest.mark.parametrize(
    ("kwargs", "specs"),
    [
        ({"replica": 2, "replicas": 2}, [AgentSpec("a", lambda c: 0, 1)]),
        ({"replicas": 0}, [AgentSpec("a", lambda c: 0, 1)]),
        ({}, [AgentSpec("a", lambda c: 0, 0)]),
        ({}, [AgentSpec("a", lambda c: 0, 1), AgentSpec("a", lambda c: 0, 1)]),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], specs: list[AgentSpec]) -> None:
    with pytest.raises(ValueError):
        Runner(specs, **kwargs)


def test_heartbeat_rows_in_the_database(services: Any) -> None:
    ctx = services.ctx
    rec = Recorder(fail_on={2})
    runner = Runner(
        [AgentSpec("demo", rec, 1), AgentSpec("other", Recorder(), 1)],
        replica=1,
        replicas=2,
        heartbeat=database_heartbeats(ctx),
        host="node1",
    )
    runner.run(once=True)
    with pytest.raises(AgentCycleError, match="demo: RuntimeError: cycle 2 broke"):
        runner.run(once=True)  # the other agents ran all the same
    rows = {r["name"]: r for r in agent_heartbeats(ctx)}
    demo = rows["demo"]
    assert (demo["replica"], demo["host"], demo["cycles"]) == (1, "node1", 2)
    assert demo["last_error"] == "RuntimeError: cycle 2 broke"
    assert demo["last_cycle"].tzinfo is not None
    assert rows["other"]["last_error"] == ""
    assert rows["other"]["cycles"] == 2
    runner.run(once=True)
    demo = {r["name"]: r for r in agent_heartbeats(ctx)}["demo"]
    assert (demo["cycles"], demo["last_error"]) == (3, "")


def _replica(services: Any, replica: int, body: Callable[[AgentContext], int | None]) -> Runner:
    beat, peers = database_liveness(services.ctx)
    return Runner(
        [AgentSpec("shared", body, 60)],
        replica=replica,
        replicas=2,
        liveness=beat,
        peers=peers,
        beat_interval=services.ctx.settings.liveness.agent_beat_seconds,
    )


def test_replicas_share_among_the_live_ones_and_take_over_a_dead_ones_share(
    services: Any,
) -> None:
    """Before, replica r of n was fixed at launch: a dead replica's share was never done."""
    # Dead after 5 s without a beat: generous on a loaded machine, short enough for a test.
    services.ctx.settings.liveness.agent_beat_seconds = 0.5
    services.ctx.settings.liveness.missed_beats = 10
    first, second = Recorder(), Recorder()
    a, b = _replica(services, 0, first), _replica(services, 1, second)
    b.start()  # b beats, and runs its first cycle
    try:
        _until(lambda: bool(second.calls))
        a.run(once=True)
        assert (first.calls[-1].replica, first.calls[-1].replicas) == (0, 2)
        assert [i for i in range(6) if first.calls[-1].mine(i)] == [0, 2, 4]
        a.beat()  # a --once run says it stopped when done: alive again for b to see
        b.run_cycle(b.specs[0])
        assert (second.calls[-1].replica, second.calls[-1].replicas) == (1, 2)
    finally:
        b._beat_stop.set()  # b dies without a word: its beats stop, its row stays
        b.stop()
        b._threads[0].join(10)
        assert b._beat_thread is not None
        b._beat_thread.join(10)

    def alone() -> bool:
        a.run_cycle(a.specs[0])
        return first.calls[-1].replicas == 1

    _until(alone, timeout=60)  # ten missed beats later: a does everything
    assert [i for i in range(6) if first.calls[-1].mine(i)] == list(range(6))


def test_a_replica_that_stops_cleanly_hands_over_at_once(services: Any) -> None:
    services.ctx.settings.liveness.agent_beat_seconds = 60.0
    first, second = Recorder(), Recorder()
    a, b = _replica(services, 0, first), _replica(services, 1, second)
    b.start()
    _until(lambda: bool(second.calls))
    a.run_cycle(a.specs[0])
    assert first.calls[-1].replicas == 2
    b.stop()
    assert b.join(10)
    a.run_cycle(a.specs[0])
    assert (first.calls[-1].replica, first.calls[-1].replicas) == (0, 1)


def test_once_raises_when_a_cycle_failed() -> None:
    rec = Recorder(fail_on={1})
    ok = Recorder()
    runner = Runner([AgentSpec("bad", rec, 60), AgentSpec("good", ok, 60)])
    with pytest.raises(AgentCycleError, match="bad: RuntimeError: cycle 1 broke"):
        runner.run(once=True)
    assert len(ok.calls) == 1  # the others still ran
