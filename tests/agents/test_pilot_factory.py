"""The pilot factory and pilot-status agents with the real Local CE (pilots are processes).

Most tests run a stand-in pilot command so that pilot counts stay put; the last one runs the
real pilot (``python -m ctaprod.pilot``) against a live server, end to end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from ctaprod.agents.pilot_factory import (
    AgentError,
    ComputingElements,
    PilotFactory,
    PilotStatusAgent,
)
from ctaprod.agents.runner import AgentContext, AgentSpec, Runner
from ctaprod.core.properties import TokenKind
from ctaprod.core.settings import QueueConfig
from ctaprod.db.sites import BANNED
from ctaprod.logic import runtime
from tests.agents.helpers import SITE, World

SLEEPER = [sys.executable, "-c", "import time; print('pilot up', flush=True); time.sleep(60)"]
ONCE = AgentContext("pilot_factory")


def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


class Setup:
    def __init__(
        self, world: World, queues: dict[str, QueueConfig], command: list[str] | None = None
    ) -> None:
        self.world = world
        world.ctx.settings.queues = queues
        self.ces = ComputingElements(world.ctx.settings)
        self.factory = PilotFactory(
            world.ctx, world.matcher, world.services.tokens, self.ces, command=command or SLEEPER
        )
        self.status = PilotStatusAgent(world.ctx, self.ces)

    def rows(self, queue: str | None = None) -> list[Any]:
        with self.world.ctx.db.read() as conn:
            return self.world.ctx.pilots.search(conn, queue=queue)

    def log(self, pilot_id: int) -> str | None:
        with self.world.ctx.db.read() as conn:
            return self.world.ctx.pilots.log(conn, pilot_id)

    def cancel_all(self) -> None:
        for name in self.world.ctx.settings.queues:
            try:
                ce = self.ces.get(name)
            except Exception:
                continue
            ce.cancel([r["ce_ref"] for r in self.rows(name)])


@pytest.fixture
def make(world: World) -> Any:
    made: list[Setup] = []

    def _make(queues: dict[str, QueueConfig], command: list[str] | None = None) -> Setup:
        made.append(Setup(world, queues, command))
        return made[-1]

    yield _make
    for setup in made:
        setup.cancel_all()


def _queue(**fields: Any) -> QueueConfig:
    return QueueConfig(**{"ce": "localhost", "site": SITE, "options": {"slots": 10}, **fields})


def test_submits_what_the_waiting_jobs_call_for(world: World, make: Any) -> None:
    setup = make({"local": _queue(max_waiting=2, max_total=3)})
    assert setup.factory.run_once(ONCE) == 0  # nothing waits: no pilot
    world.submit(5)
    assert setup.factory.run_once(ONCE) == 2
    rows = setup.rows()
    assert [(r["status"], r["ce"], r["queue"], r["site"]) for r in rows] == [
        ("Submitted", "localhost", "local", SITE)
    ] * 2
    work = world.ctx.settings.state_dir / "pilots" / "local"
    for row in rows:
        assert row["ce_ref"] == row["stamp"]
        spec = json.loads((work / row["stamp"] / "spec.json").read_text())
        assert spec["argv"] == SLEEPER
        env = spec["env"]
        assert env["CTAPROD_PILOT_STAMP"] == row["stamp"]
        assert env["CTAPROD_PILOT_URL"] == world.ctx.settings.server_url()
        assert (env["CTAPROD_PILOT_SITE"], env["CTAPROD_PILOT_CE"], env["CTAPROD_PILOT_QUEUE"]) == (
            SITE,
            "localhost",
            "local",
        )
        assert env["CTAPROD_PILOT_WORK_DIR"] == str((work / row["stamp"]).absolute())
        # The credential reaches the pilot on a pipe: never in its spec file or environment.
        assert spec["credential"] is True
        assert not any(k.startswith(("CTAPROD_PILOT_TOKEN", "CTAPROD_TOKEN")) for k in env)
        credential = setup.factory.spec_for("local", _queue(), row["stamp"]).credential
        assert credential not in (work / row["stamp"] / "spec.json").read_text()
        ident = world.services.tokens.verify(credential)
        assert (ident.user, ident.group, ident.kind) == ("pilot", "ctao_pilot", TokenKind.PILOT)
        # Its own registration credential, bound to its record, good for registering only.
        assert (ident.stamp, ident.pilot_id, ident.registration_only) == (row["stamp"], None, True)
    _until(lambda: all("pilot up" in (work / r["stamp"] / "pilot.log").read_text() for r in rows))

    assert setup.factory.run_once(ONCE) == 0  # max_waiting reached
    # A credential for the first pilot's record (the CE keeps the real one in memory).
    first = setup.factory.spec_for("local", _queue(), rows[0]["stamp"]).credential
    credential = world.services.tokens.verify(first)
    runtime.register_pilot(
        world.ctx, world.services.tokens, credential, rows[0]["stamp"], SITE, "localhost", "local"
    )
    assert setup.factory.run_once(ONCE) == 1  # one waiting slot, and max_total allows one
    assert setup.factory.run_once(ONCE) == 0  # max_total reached
    assert len(setup.rows()) == 3

    # The status agent sees the unregistered ones running in the CE: Waiting.
    assert setup.status.run_once(AgentContext("pilot_status")) == 2
    assert sorted(r["status"] for r in setup.rows()) == ["Running", "Waiting", "Waiting"]


def test_no_pilots_where_the_jobs_cannot_run(world: World, make: Any) -> None:
    world.submit(4, Platform="EL9")
    with world.ctx.db.write() as conn:
        world.ctx.sites.set_status(conn, "LCG.Banned.org", BANNED, "down", "op", world.clock())
    setup = make(
        {
            "banned": _queue(site="LCG.Banned.org", platform="EL9"),
            "el8": _queue(platform="EL8"),
            "el9": _queue(platform="EL9", max_waiting=3, max_total=3),
        }
    )
    assert setup.factory.run_once(ONCE) == 3
    assert [r["queue"] for r in setup.rows()] == ["el9"] * 3


def test_replicas_share_the_queues(world: World, make: Any) -> None:
    world.submit(3)
    names = [f"q{i}" for i in range(6)]
    setup = make({n: _queue(max_waiting=1, max_total=1) for n in names})
    done = [setup.factory.run_once(AgentContext("pilot_factory", r, 2)) for r in (0, 1)]
    assert sum(done) == 6
    assert all(done)
    assert sorted(r["queue"] for r in setup.rows()) == names


def test_a_broken_queue_does_not_starve_the_others(world: World, make: Any) -> None:
    world.submit(2)
    setup = make({"broken": _queue(ce_type="nosuchbatch"), "ok": _queue()})
    with pytest.raises(AgentError, match=r"broken: InvalidInput: .*unknown CE type"):
        setup.factory.run_once(ONCE)
    assert [r["queue"] for r in setup.rows()] == ["ok", "ok"]


def test_status_agent_fails_a_pilot_that_died_and_keeps_its_output(world: World, make: Any) -> None:
    world.submit(2)
    crash = [
        sys.executable,
        "-c",
        "import sys; print('cannot reach the server', flush=True); sys.exit(2)",
    ]
    setup = make({"crashy": _queue(max_waiting=1, max_total=1)}, crash)
    assert setup.factory.run_once(ONCE) == 1
    [row] = setup.rows()
    ce = setup.ces.get("crashy")
    _until(lambda: ce.status([row["ce_ref"]])[row["ce_ref"]].value == "Failed")
    assert setup.status.run_once(AgentContext("pilot_status")) == 2  # status + its log
    [row] = setup.rows()
    assert (row["status"], row["status_reason"]) == (
        "Failed",
        "Batch job failed before registering",
    )
    assert "cannot reach the server" in (setup.log(row["pilot_id"]) or "")


def test_status_agent_on_a_killed_pilot(world: World, make: Any) -> None:
    world.submit(1)
    setup = make({"local": _queue(max_waiting=1, max_total=1)})
    assert setup.factory.run_once(ONCE) == 1
    [row] = setup.rows()
    pid_file = world.ctx.settings.state_dir / "pilots" / "local" / row["stamp"] / "pid"
    _until(pid_file.exists)
    _until(lambda: "pilot up" in setup.ces.get("local").output(row["ce_ref"]))
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the node died under it
    _until(lambda: setup.ces.get("local").status([row["ce_ref"]])[row["ce_ref"]].value == "Failed")
    setup.status.run_once(AgentContext("pilot_status"))
    [row] = setup.rows()
    assert row["status"] == "Failed"
    assert "pilot up" in (setup.log(row["pilot_id"]) or "")


@pytest.mark.slow
def test_real_pilots_run_the_waiting_jobs(live_server: Any) -> None:
    services = live_server.services
    world = World(services, fake_clock=False)
    world.ctx.settings.public_url = live_server.url
    world.ctx.settings.queues = {"local": _queue(max_waiting=2, max_total=2, max_empty_matches=1)}
    ces = ComputingElements(world.ctx.settings)
    ids = world.submit(3, Executable="/bin/echo", Arguments="hello from job %j", CPUTime=600)
    runner = Runner(
        [
            AgentSpec(
                "pilot_factory",
                PilotFactory(world.ctx, world.matcher, services.tokens, ces).run_once,
                1,
            ),
            AgentSpec("pilot_status", PilotStatusAgent(world.ctx, ces).run_once, 1),
        ]
    )

    def jobs_done() -> bool:
        runner.run(once=True)
        return all(world.status(j) == "Done" for j in ids)

    try:
        _until(jobs_done, timeout=120)
        _until(lambda: all(r["status"] in ("Done", "Failed") for r in world.pilots()), 60)
    finally:
        ces.get("local").cancel([r["ce_ref"] for r in world.pilots()])
    rows = world.pilots()
    assert 1 <= len(rows) <= 3
    assert all(r["status"] == "Done" for r in rows), [dict(r) for r in rows]
    assert all(world.pilot_log(r["pilot_id"]) for r in rows), "each pilot left its log"
    assert sum(r["jobs_done"] for r in rows) == 3


def test_the_lost_pilot_timer_survives_an_agent_restart(world: World, make: Any) -> None:
    """Before, the "unknown to the CE since" time lived in the agent's memory: a restart
    started the count again, so a pilot forgotten by a CE whose agent restarts often was
    never Lost."""
    setup = make({"local": _queue()})
    now = world.clock()
    with world.ctx.db.write() as conn:
        world.ctx.pilots.add(
            conn,
            [
                {
                    "stamp": "forgotten",
                    "ce_ref": "forgotten",
                    "ce": "localhost",
                    "queue": "local",
                    "site": SITE,
                    "status": "Waiting",
                    "submission_time": now,
                    "last_update": now,
                }
            ],
        )
    first = PilotStatusAgent(world.ctx, setup.ces, lost_after=300)
    assert first.run_once(AgentContext("pilot_status")) == 0
    world.clock.advance(200)
    assert first.run_once(AgentContext("pilot_status")) == 0
    world.clock.advance(101)
    restarted = PilotStatusAgent(world.ctx, ComputingElements(world.ctx.settings), lost_after=300)
    assert restarted.run_once(AgentContext("pilot_status")) == 1
    [row] = setup.rows()
    assert (row["status"], row["status_reason"]) == ("Lost", "Unknown to the CE for 301 s")
