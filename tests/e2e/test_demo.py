"""`ctaprod demo` (the README's main job: a 3-step CTA production, plain and with --chaos) and
`ctaprod demo-jobs` (a parametric JDL) as real processes.

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


def _demo(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAPROD_")}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "ctaprod.cli.main", "demo", "--port", str(free_port()),
         "--state-dir", str(tmp_path / "demo"), *args],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.skipif(
    os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
    reason="the demo runs on the embedded SQLite default whatever the session's engine",
)
def test_production_demo_ends_complete_and_valid(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--mc-tasks", "6", "--payload-seconds", "0")
    assert "(CTADIRAC format, 3 steps, 6 MC runs)" in out
    # 6 MC runs (a data and a log file each), 6 processed files, 2 merges (5 + the flushed 1)
    assert "Production validation: VALID (3 steps, 20/20 outputs, checksums full" in out
    assert "Production 1: Valid" in out
    merged = tmp_path / "demo" / "storage" / "LOCAL-DISK" / "ctao" / "MC" / "demo" / "DemoProd"
    assert len(list(merged.glob("LaPalma/gamma/ctapipe-merge/3/Data/*/*.merged.DL2.h5"))) == 2


@pytest.mark.skipif(
    os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
    reason="the demo runs on the embedded SQLite default whatever the session's engine",
)
def test_production_demo_with_chaos_still_ends_valid(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--chaos", "--mc-tasks", "12", "--payload-seconds", "1")
    for fault in (
        "killed with SIGKILL mid-payload",
        "LOCAL-DISK banned for writing",
        "LOCAL-DISK open for writing again",
        "ctaprod up (server and agents) killed with SIGKILL",
        "ctaprod up started again on the same state directory",
    ):
        assert re.search(rf"chaos: .*{re.escape(fault)}", out), out
    assert "Production validation: VALID (3 steps, 39/39 outputs, checksums full" in out
    assert "Production 1: Valid" in out
