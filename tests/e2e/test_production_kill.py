"""A 3-step CTA production killed mid-way completes with nothing lost or duplicated.

`ctaprod up` (API server and every agent, one process) runs CTADIRAC's full production file
without its 4th step (MC simulation -> ctapipe processing -> merging) with the CTA stand-in
payloads and real local pilots. It is SIGKILLed three times as the steps progress, each time
at a random moment, and started again on the same state directory and database after a
random outage (once longer than a job may go without a heartbeat). The pilots it started are
in sessions of their own: they keep running through the outage, fail to reach the server,
retry, and finish or lose their jobs: that is part of the fault. The production must still
end Completed, every input Processed once, every output registered once, no task with two
Done jobs, and `ctaprod prod validate --checksum full` must say Valid.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from ctaprod.client.http import Client
from ctaprod.core.prod_views import ProductionView
from ctaprod.core.schemas import JobFilter
from tests.e2e.test_data_e2e import cli
from tests.e2e.test_embedded import embedded  # noqa: F401  (the `ctaprod up` fixture)
from tests.fixtures import fixture_dir

pytestmark = pytest.mark.slow
NAME = "kill_prod"
MC_TASKS = 8


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> SimpleNamespace:
    for agent in ("TASK_CREATION", "TASK_SUBMISSION", "TRANSFORMATION_RECOVERY", "PRODUCTION"):
        monkeypatch.setenv(f"CTAPROD_AGENTS__{agent}__INTERVAL", "1")
    # A job matched in the instant the server died (the pilot never got the answer) waits
    # for this before it is put back in the queue (default 10 minutes).
    monkeypatch.setenv("CTAPROD_JOBS__MATCHED_TIMEOUT", "10")
    monkeypatch.setenv("CTAPROD_CTA_SOFTWARE", "standin")
    env: SimpleNamespace = request.getfixturevalue("embedded")
    return env


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`ctaprod up` again, in a process group of its own, on the same state and database."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{env['CTAPROD_PORT']}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "ctaprod up did not start"
        time.sleep(0.2)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to `ctaprod up` (server and agents at once); its group when it leads one. The
    pilots it started are in their own sessions and are not touched."""
    if os.getpgid(proc.pid) == proc.pid:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(30)


def _definition(tmp_path: Path) -> Path:
    """CTADIRAC's full production file without its 4th step (a second merge)."""
    raw = yaml.safe_load(
        (fixture_dir("ctadirac") / "workflows" / "full_production_config.yml").read_text()
    )
    raw["ProdSteps"] = raw["ProdSteps"][:3]
    path = tmp_path / "prod.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _view(client: Client) -> ProductionView | None:
    try:
        return client.production(NAME)
    except httpx.TransportError:  # between a kill and the restart
        return None


def test_a_production_killed_three_times_completes_once(
    up: SimpleNamespace, tmp_path: Path
) -> None:
    ctaprod, client = cli(tmp_path), up.client
    out = ctaprod(
        "prod", "submit", str(_definition(tmp_path)), "--name", NAME, "--mc-tasks", str(MC_TASKS)
    )
    assert "created, New" in out, out
    ctaprod("prod", "start", NAME)
    rng = random.Random(int(os.environ.get("CTAPROD_TEST_SEED", "9")))

    # Kill when the MC step has its first Done task, when the processing has, and when the
    # merge step has its first task; a random delay after each milestone.
    def tasks(view: ProductionView, i: int) -> int:
        return sum(view.steps[i].tasks.values())

    milestones: list[Callable[[ProductionView], bool]] = [
        lambda v: v.steps[0].tasks.get("Done", 0) >= 1,
        lambda v: v.steps[1].tasks.get("Done", 0) >= 1,
        lambda v: tasks(v, 2) >= 1,
    ]
    kills: list[str] = []
    deadline = time.monotonic() + 150
    while True:
        view = _view(client)
        assert time.monotonic() < deadline, (view, kills, up.log.read_text()[-4000:])
        if view is not None and view.status == "Completed":
            break
        if view is not None and milestones and milestones[0](view):
            milestones.pop(0)
            time.sleep(rng.uniform(0.0, 1.5))
            snapshot = _view(client)
            _kill(up.proc)
            kills.append(f"{[s.tasks for s in snapshot.steps] if snapshot else '?'}")
            # Down for a while, the pilots retrying; once longer than a job may go without
            # a heartbeat (CTAPROD_JOBS__STALLED_AFTER=4 s in the fixture). The stand-ins
            # take about 0.5 s, so the jobs running at the kill end during the outage and
            # their pilots deliver the final status after it, backing off (1, 2, 4, 8 s).
            time.sleep(rng.uniform(6.0, 10.0) if len(kills) == 2 else rng.uniform(0.5, 3.0))
            up.proc = _start(up.env, up.log)
        time.sleep(0.3)
    assert len(kills) == 3, f"the production ended before the third kill: {kills}"

    mc, proc, merge = view.steps
    assert [s.trans_status for s in view.steps] == ["Completed"] * 3
    mc_out = ctaprod("dm", "find", f"prod_step_id={mc.trans_id}").split()
    mc_data = ctaprod("dm", "find", f"prod_step_id={mc.trans_id}", "outputType=Data").split()
    proc_out = ctaprod("dm", "find", f"prod_step_id={proc.trans_id}").split()
    merge_out = ctaprod("dm", "find", f"prod_step_id={merge.trans_id}").split()
    # Every MC run once (a data file and its log), each processed once, merged in 5 + 3.
    assert mc.tasks.get("Done") == MC_TASKS, mc.tasks
    assert (len(mc_out), len(mc_data)) == (2 * MC_TASKS, MC_TASKS)
    assert proc.files == {"Processed": MC_TASKS}, proc.files
    assert proc.tasks.get("Done") == MC_TASKS, proc.tasks
    assert len(proc_out) == MC_TASKS
    assert merge.files == {"Processed": MC_TASKS}, merge.files
    assert merge.tasks.get("Done") == 2, merge.tasks
    assert len(merge_out) == 2
    # No input in two Done tasks (no two outputs for one input group), none left out.
    for step, inputs in ((proc, mc_data), (merge, proc_out)):
        done = client.transformation_tasks(step.trans_id, status=["Done"], inputs=True)
        used = [lfn for t in done for lfn in t.inputs]
        assert sorted(used) == sorted(set(used)) == sorted(inputs), step.step_id
    # No task has two Done jobs, no job went Done twice.
    for step in view.steps:
        jobs = list(client.iter_jobs(JobFilter(job_group=f"{step.trans_id:08d}")))
        done_per_task = Counter(j.job_name for j in jobs if j.status == "Done")
        assert len(done_per_task) == step.tasks["Done"], step.step_id
        assert set(done_per_task.values()) == {1}, done_per_task
        for job in jobs:
            entries = [h.status for h in client.history(job.job_id)]
            assert entries.count("Done") <= 1, (job.job_id, entries)
    report = tmp_path / "report.json"
    out = ctaprod("prod", "validate", NAME, "--checksum", "full", "--report", str(report))
    assert f"Production {view.prod_id}: Valid" in out, out
    steps = json.loads(report.read_text())["steps"]
    assert [s["duplicates"]["count"] for s in steps] == [0, 0, 0]
    assert [s["produced_outputs"] for s in steps] == [2 * MC_TASKS, MC_TASKS, 2]
    assert client.production(NAME).validation_status == "Valid"
