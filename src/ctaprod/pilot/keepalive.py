"""Heartbeats while the job wrapper moves data, so a long transfer is not taken for a stall.

The watchdog sends heartbeats while the payload runs; before it (input sandboxes and input
data) and after it (output data and the output sandbox) the wrapper keeps the job alive with
:class:`KeepAlive`, a daemon thread. Its beats carry the last usage figures the wrapper knows
(the payload's, once it ran), never zeros over real figures. The first beat whose reply
says the job is no longer ours (``beat`` returns True: Kill, 403/404/409) stops the beats
and sets :attr:`KeepAlive.gone`, which the transfer under way watches to give up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ctaprod.pilot.watchdog import Usage

__all__ = ["KeepAlive"]

logger = logging.getLogger("ctaprod.pilot.keepalive")


class KeepAlive:
    """Call ``beat`` every ``interval`` seconds inside a ``with`` block (first after one)
    until it returns True (the job is gone).

    ``usage`` gives the figures to send (the last known); without it a beat reports the
    wall-clock time since the block started.
    """

    def __init__(
        self,
        beat: Callable[[Usage], bool],
        interval: float,
        usage: Callable[[], Usage] | None = None,
    ) -> None:
        self.beat = beat
        self.interval = interval
        self.usage = usage
        self.beats = 0
        self.gone = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> KeepAlive:
        start = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                if self.usage is not None:
                    usage = self.usage()
                else:
                    usage = Usage(0.0, time.monotonic() - start, 0, 0)
                try:
                    gone = self.beat(usage)
                    self.beats += 1
                except Exception:
                    continue
                if gone:
                    logger.warning("the server took the job away: keep-alive stopped")
                    self.gone.set()
                    return

        self._thread = threading.Thread(target=loop, name="ctaprod-keepalive", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
