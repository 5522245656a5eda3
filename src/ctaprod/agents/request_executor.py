"""The request executor agent: ``logic.requests.execute_due`` with its claims kept alive.

Requests an executor claims are leased (``data.request_lease_seconds``). While a pass runs,
a renewal thread extends the leases of its claim every third of a lease, so a long transfer
keeps its requests; when the process dies the renewals stop and another executor releases
the requests once the lease has passed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ctaprod.agents.runner import AgentContext
from ctaprod.logic.context import Context
from ctaprod.logic.request_claims import lease_seconds, new_claim, renew_leases
from ctaprod.logic.requests import execute_due

log = logging.getLogger("ctaprod.agents.request_executor")


@contextmanager
def leases_renewed(ctx: Context, claim: str, every: float) -> Iterator[None]:
    """Renew the leases of ``claim`` every ``every`` seconds until the block ends."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(every):
            try:
                renew_leases(ctx, claim)
            except Exception:  # the next beat tries again; the lease leaves some slack
                log.exception("requests: cannot renew the leases of %s", claim)

    thread = threading.Thread(target=renew, name=f"lease-{claim}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class RequestExecutorAgent:
    """Each cycle executes up to ``limit`` due requests of this replica's share."""

    name = "request_executor"

    def __init__(self, ctx: Context, *, limit: int = 100) -> None:
        self.ctx = ctx
        self.limit = limit
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def run_once(self, actx: AgentContext) -> int:
        claim = new_claim(f"{self.worker}/{actx.name}-{actx.replica}")
        with leases_renewed(self.ctx, claim, lease_seconds(self.ctx) / 3):
            stats = execute_due(
                self.ctx,
                limit=self.limit,
                claim=claim,
                replica=actx.replica,
                replicas=actx.replicas,
            )
        if stats.total:
            log.info(
                "requests: %d claimed, %d done, %d to retry, %d failed, %d canceled meanwhile, "
                "%d released after their executor died",
                stats.claimed,
                stats.done,
                stats.retrying,
                stats.failed,
                stats.lost,
                stats.released,
            )
        return stats.total
