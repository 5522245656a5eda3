"""KeepAlive: heartbeats while the wrapper moves data, stopped when the block ends."""

from __future__ import annotations

import time

from ctaprod.pilot.keepalive import KeepAlive
from ctaprod.pilot.watchdog import Usage


def test_beats_while_the_block_runs_and_stops_after() -> None:
    seen: list[Usage] = []

    def beat(usage: Usage) -> bool:
        seen.append(usage)
        if len(seen) == 2:
            raise RuntimeError("server hiccup")  # must not end the keep-alive
        return False

    with KeepAlive(beat, 0.05) as alive:
        time.sleep(0.5)
    count = len(seen)
    assert count >= 4
    assert alive.beats == count - 1  # the failed one is not counted
    assert seen[-1].wall_seconds > seen[0].wall_seconds > 0
    time.sleep(0.2)
    assert len(seen) == count  # stopped with the block


def test_no_beat_before_one_interval() -> None:
    seen: list[Usage] = []

    def beat(usage: Usage) -> bool:
        seen.append(usage)
        return False

    with KeepAlive(beat, 10.0):
        time.sleep(0.05)
    assert seen == []
