"""`ctaprod demo` (the README's main job) as a real process: jobs Done, outputs in the catalog.

The demo always runs on the embedded SQLite default, so it runs once, in the SQLite session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
    reason="the demo runs on the embedded SQLite default whatever the session's engine",
)
def test_demo_runs_jobs_with_data_to_done(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAPROD_")}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ctaprod.cli.main",
            "demo-jobs",
            "--jobs",
            "6",
            "--port",
            str(free_port()),
            "--state-dir",
            str(tmp_path / "demo"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Submitted 6 jobs" in out
    assert re.search(r"│ Done\s*│\s*6 │", out), out  # every job Done, no other status row
    assert not re.search(r"│ (Failed|Completed|Waiting)\s*│", out), out
    assert "Output sandbox of job 1: StdErr, StdOut, result_1.txt" in out
    assert "Metadata query particle=gamma data_level=1: 6 output files found" in out
    assert "/ctao/demo/input/corsika_demo.dat" in out.split("output files found")[-1]
    stored = tmp_path / "demo" / "storage" / "LOCAL-DISK" / "ctao" / "demo" / "output"
    assert sorted(p.name for p in stored.iterdir()) == [f"result_{i}.txt" for i in range(1, 7)]
