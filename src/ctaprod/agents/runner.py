"""The one agent runner: loop, interval, wake-ups, stop, partitioning, heartbeats, ``once``.

An agent is a ``run_once(AgentContext) -> int | None`` body (the number of items it handled)
with its dependencies injected when it is built. The runner gives each agent its own thread
that runs a cycle, writes a heartbeat, then sleeps for the agent's interval; a wake-up cuts
the sleep short, the stop event ends the loop after the current cycle. A failing cycle is
logged and recorded (in :attr:`Runner.stats` and the heartbeat) and the loop goes on; in
``once`` mode the runner raises :class:`AgentCycleError` after the cycles if any failed.

Replicas of the same agents share the work among the *live* ones. Each replica has an id
(``replica``, unique per agent); a liveness thread writes a beat for all its agents every
``beat_interval`` seconds, whatever the length of their cycles, and before every cycle the
runner asks ``peers`` which replicas of that agent beat recently. Among the ``n`` live ids
sorted, this replica's rank ``k`` is its share: the items with ``id % n == k``
(:meth:`AgentContext.mine`); the bodies push that filter into their SQL. When a replica
dies its beats stop and, once it counts as dead, the survivors' shares cover its items.
While replicas disagree on who is alive (one beat interval or so) a share may be done twice
or wait one cycle: every claim is atomic in the database, so twice is harmless. Without
``peers`` the split is the fixed ``replica`` of ``replicas``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("ctaprod.agents")


@dataclass(frozen=True)
class AgentContext:
    """What a cycle knows about where it runs: its name, its replica and the stop signal."""

    name: str
    replica: int = 0
    replicas: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    cycle: int = 0

    def mine(self, ident: int) -> bool:
        """Whether the item with integer id ``ident`` belongs to this replica."""
        return ident % self.replicas == self.replica

    def mine_name(self, name: str) -> bool:
        """Whether the item called ``name`` belongs to this replica (stable across processes)."""
        return zlib.crc32(name.encode()) % self.replicas == self.replica

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()


RunOnce = Callable[[AgentContext], int | None]


@dataclass(frozen=True)
class AgentSpec:
    """An agent as the runner sees it. ``wake`` may be shared with whoever wants to wake it."""

    name: str
    run_once: RunOnce
    interval: float
    wake: threading.Event | None = None


@dataclass(frozen=True)
class Heartbeat:
    """Written after every cycle (good or bad) by the runner's heartbeat sink."""

    name: str
    replica: int
    host: str
    time: datetime
    error: str = ""
    result: int | None = None


HeartbeatSink = Callable[[Heartbeat], None]
# (agent names, replica id, host, now, alive): a beat; alive=False when the replica stops.
LivenessSink = Callable[[Sequence[str], int, str, datetime, bool], None]
# agent name -> the ids of its replicas that beat recently
LivePeers = Callable[[str], Sequence[int]]


class AgentCycleError(RuntimeError):
    """Cycles failed in ``once`` mode; the message names the agents and their errors."""


@dataclass
class AgentStats:
    cycles: int = 0
    errors: int = 0
    last_error: str = ""
    last_result: int | None = None
    last_cycle: datetime | None = None


def default_host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Runner:
    """Runs agents until stopped (or each once). Thread-safe ``wake`` and ``stop``."""

    def __init__(
        self,
        specs: Sequence[AgentSpec],
        *,
        replica: int = 0,
        replicas: int = 1,
        heartbeat: HeartbeatSink | None = None,
        host: str | None = None,
        stop: threading.Event | None = None,
        liveness: LivenessSink | None = None,
        peers: LivePeers | None = None,
        beat_interval: float = 10.0,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique: {names}")
        if replicas < 1 or not 0 <= replica < replicas:
            raise ValueError(f"replica {replica} of {replicas}: need 0 <= replica < replicas")
        for spec in specs:
            if spec.interval <= 0:
                raise ValueError(f"agent {spec.name}: the interval must be positive")
        self.specs = list(specs)
        self.replica = replica
        self.replicas = replicas
        self.heartbeat = heartbeat
        self.host = host or default_host()
        self.stop_event = stop if stop is not None else threading.Event()
        self.stats = {s.name: AgentStats() for s in specs}
        self.liveness = liveness
        self.peers = peers
        self.beat_interval = beat_interval
        self._wake = {s.name: s.wake if s.wake is not None else threading.Event() for s in specs}
        self._threads: list[threading.Thread] = []
        self._beat_stop = threading.Event()
        self._beat_thread: threading.Thread | None = None

    # --- control ------------------------------------------------------------------------
    def wake(self, name: str) -> None:
        """Run agent ``name`` now instead of at the end of its interval."""
        self._wake[name].set()

    def stop(self) -> None:
        """Ask every loop to end after its current cycle."""
        self.stop_event.set()
        for event in self._wake.values():
            event.set()

    # --- liveness and shares --------------------------------------------------------------
    def beat(self, alive: bool = True) -> None:
        """Tell the other replicas that this one's agents are alive (or, with ``alive``
        False, that they stopped)."""
        if self.liveness is None:
            return
        try:
            names = [s.name for s in self.specs]
            self.liveness(names, self.replica, self.host, datetime.now(UTC), alive)
        except Exception:
            log.exception("agents (replica %d): cannot write the liveness beat", self.replica)

    def _beat_loop(self) -> None:
        while not self._beat_stop.wait(self.beat_interval):
            self.beat()

    def share(self, name: str) -> tuple[int, int]:
        """(rank, count) of this replica among the live replicas of agent ``name``."""
        if self.peers is None:
            return self.replica, self.replicas
        try:
            live = sorted({*self.peers(name), self.replica})
        except Exception:
            log.exception("agent %s: cannot read the live replicas; using its fixed share", name)
            return self.replica, self.replicas
        return live.index(self.replica), len(live)

    # --- running ------------------------------------------------------------------------
    def run_cycle(self, spec: AgentSpec) -> int | None:
        """One cycle of one agent: run it, record the outcome, write the heartbeat."""
        stats = self.stats[spec.name]
        rank, count = self.share(spec.name)
        actx = AgentContext(spec.name, rank, count, self.stop_event, stats.cycles)
        result: int | None = None
        error = ""
        try:
            result = spec.run_once(actx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:4000]
            stats.errors += 1
            log.exception(
                "agent %s (replica %d): cycle %d failed", spec.name, self.replica, stats.cycles
            )
        else:
            if result:
                log.info("agent %s (replica %d): %d handled", spec.name, self.replica, result)
        now = datetime.now(UTC)
        stats.cycles += 1
        stats.last_error = error
        stats.last_result = result
        stats.last_cycle = now
        if self.heartbeat is not None:
            try:
                self.heartbeat(Heartbeat(spec.name, self.replica, self.host, now, error, result))
            except Exception:
                log.exception("agent %s: cannot write its heartbeat", spec.name)
        return result

    def _loop(self, spec: AgentSpec) -> None:
        wake = self._wake[spec.name]
        while not self.stop_event.is_set():
            wake.clear()  # a wake-up arriving during the cycle triggers the next one at once
            self.run_cycle(spec)
            if self.stop_event.is_set():
                break
            wake.wait(spec.interval)

    def start(self) -> None:
        """Start one thread per agent and return; end them with :meth:`stop` + :meth:`join`."""
        if self._threads:
            raise RuntimeError("the runner is already started")
        self.beat()  # seen by the other replicas before the first cycle
        if self.liveness is not None:
            self._beat_thread = threading.Thread(
                target=self._beat_loop, daemon=True, name=f"agents-beat-{self.replica}"
            )
            self._beat_thread.start()
        for spec in self.specs:
            thread = threading.Thread(
                target=self._loop,
                args=(spec,),
                daemon=True,
                name=f"agent-{spec.name}-{self.replica}",
            )
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loops to end; True when all have."""
        for thread in self._threads:
            thread.join(timeout)
        ended = not any(t.is_alive() for t in self._threads)
        if ended and self._beat_thread is not None:
            self._beat_stop.set()
            self._beat_thread.join(timeout)
            self._beat_thread = None
            self.beat(alive=False)  # the others take over our share at once
        return ended

    def run(self, *, once: bool = False, join_timeout: float | None = 60.0) -> None:
        """Run until the stop event is set (Ctrl-C too); ``once``: each agent once, in order,
        then raise :class:`AgentCycleError` if any cycle failed."""
        if once:
            self.beat()
            failed = []
            for spec in self.specs:
                if self.stop_event.is_set():
                    break
                self.run_cycle(spec)
                if self.stats[spec.name].last_error:
                    failed.append(f"{spec.name}: {self.stats[spec.name].last_error}")
            self.beat(alive=False)
            if failed:
                raise AgentCycleError("; ".join(failed))
            return
        self.start()
        try:
            self.stop_event.wait()
        except KeyboardInterrupt:
            log.info("interrupted: stopping the agents")
        finally:
            self.stop()
            if not self.join(join_timeout):
                log.warning("some agents did not finish their cycle within %s s", join_timeout)
