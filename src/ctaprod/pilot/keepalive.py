"""Heartbeats while the job wrapper moves data, so a long transfer is not taken for a stall.

The watchdog sends heartbeats while the payload runs; before it (input sandboxes and input
data) and after it (output data and the output sandbox) the wrapper keeps the job alive with
:class:`KeepAlive`, a daemon thread that reports the wall-clock time since it started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from ctaprod.pilot.watchdog import Usage

__all__ = ["KeepAlive"]


class KeepAlive:
    """Call ``beat`` every ``interval`` seconds inside a ``with`` block (first after one)."""

    def __init__(self, beat: Callable[[Usage], bool], interval: float) -> None:
        self.beat = beat
        self.interval = interval
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> KeepAlive:
        start = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                usage = Usage(0.0, time.monotonic() - start, 0, 0)
                try:
                    self.beat(usage)
                    self.beats += 1
                except Exception:
                    continue

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
