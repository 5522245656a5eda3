"""Match requests batched per server process.

Pilots ask for jobs concurrently. Served one per thread-pool thread, each request costs a
thread hop and a write transaction of its own, and on SQLite they queue for the single
write lock anyway. Here the route awaits a future while a few matcher threads take every
request waiting at that moment (up to ``max_batch``) and serve them in one transaction
(:meth:`ctaprod.logic.matcher.Matcher.match_many`). Under load the batches grow by
themselves; a lone request is served at once, alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from ctaprod.core.errors import CtaprodError
from ctaprod.core.identity import Identity
from ctaprod.core.matching import Resource
from ctaprod.logic.matcher import Match, Matcher, MatchRequest

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    request: MatchRequest
    future: asyncio.Future[Match | None]
    loop: asyncio.AbstractEventLoop


class MatchBatcher:
    """Serves match requests from an event loop on ``threads`` matcher threads."""

    def __init__(self, matcher: Matcher, threads: int = 1, max_batch: int = 16) -> None:
        if threads < 1 or max_batch < 1:
            raise ValueError("threads and max_batch must be at least 1")
        self.matcher = matcher
        self.threads = threads
        self.max_batch = max_batch
        self._pending: deque[_Waiting] = deque()
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False

    async def match(self, ident: Identity, pilot_id: int, res: Resource) -> Match | None:
        """The match for this request (None: nothing it can run); raises its refusal."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(MatchRequest(ident, pilot_id, res), loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise RuntimeError("the match batcher is closed")
            if len(self._workers) < self.threads:
                self._start_worker()
            self._pending.append(waiting)
            self._cond.notify()
        return await waiting.future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the threads once the requests already queued are served."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            workers = list(self._workers)
        for t in workers:
            t.join(timeout)

    def _start_worker(self) -> None:
        t = threading.Thread(target=self._run, name=f"matcher-{len(self._workers)}", daemon=True)
        self._workers.append(t)
        t.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
            # Let go of the GIL once: the event loop reads the requests that arrived
            # meanwhile, so they join this batch (under load: 4 requesters, batches of ~2
            # without it, of 4 with it).
            time.sleep(0)
            with self._cond:
                n = min(len(self._pending), self.max_batch)
                batch = [self._pending.popleft() for _ in range(n)]
            self._serve(batch)

    def _serve(self, batch: list[_Waiting]) -> None:
        try:
            outcomes: list[Match | CtaprodError | BaseException | None] = list(
                self.matcher.match_many([w.request for w in batch])
            )
        except Exception as exc:  # the database is away, a bug: every request gets it
            log.debug("match batch of %d failed: %r", len(batch), exc)
            outcomes = [exc] * len(batch)
        for w, outcome in zip(batch, outcomes, strict=True):
            try:
                w.loop.call_soon_threadsafe(_settle, w.future, outcome)
            except RuntimeError:  # its event loop is closed: the server is stopping
                log.debug("match reply dropped: the event loop is closed")


def _settle(future: asyncio.Future[Match | None], outcome: Match | BaseException | None) -> None:
    if future.done():  # the client went away: its job, if any, is Matched and will stall
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
