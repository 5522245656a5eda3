"""A Processing transformation end to end on the embedded default (`ctaprod up` as a real
process, real local pilots, the POSIX SEs, the CLI as a user runs it): it picks up the input
files existing at its creation and those registered after it (catalog events), runs their
jobs, and ends with every input Processed and every output registered once, with its
metadata and its ancestry."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.e2e.test_data_e2e import cli
from tests.e2e.test_embedded import embedded  # noqa: F401  (the `ctaprod up` fixture)

pytestmark = pytest.mark.slow
IN = "/ctao/e2e/tin"
YAML = """\
name: e2e_proc
type: Processing
input_query: particle=gamma
group_size: 2
job_template:
  Executable: /bin/sh
  Arguments: "-c 'cat *.dat > {{output_name}}; echo processed'"
  CPUTime: 600
output_metadata: {dl: 2}
output_lfn_template: /ctao/MC/e2e/{{transformation_id}}/{{task_id}}.out
"""


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> SimpleNamespace:
    for agent in ("TASK_CREATION", "TASK_SUBMISSION", "TRANSFORMATION_RECOVERY"):
        monkeypatch.setenv(f"CTAPROD_AGENTS__{agent}__INTERVAL", "1")
    env: SimpleNamespace = request.getfixturevalue("embedded")
    return env


def test_a_processing_transformation_runs_to_the_end(up: SimpleNamespace, tmp_path: Path) -> None:
    ctaprod, client = cli(tmp_path), up.client
    ctaprod("dm", "meta", "add-field", "particle", "string")
    ctaprod("dm", "meta", "add-field", "dl", "int")
    for i in range(3):
        local = tmp_path / f"in{i}.dat"
        local.write_bytes(f"events of file {i}\n".encode() * 100)
        ctaprod("dm", "put", str(local), f"{IN}/in{i}.dat")
    ctaprod("dm", "meta", "set", IN, "particle=gamma")
    definition = tmp_path / "proc.yaml"
    definition.write_text(YAML)
    out = ctaprod("trans", "create", str(definition), "--start")
    assert "3 input files attached" in out, out
    # A file registered after the creation reaches it through the catalog events.
    late = tmp_path / "in3.dat"
    late.write_bytes(b"late events\n" * 100)
    ctaprod("dm", "put", str(late), f"{IN}/in3.dat")
    deadline = time.monotonic() + 120
    while True:
        view = client.transformation("e2e_proc")
        if view.files == {"Processed": 4} and view.tasks == {"Done": 2}:
            break
        assert time.monotonic() < deadline, (view.files, view.tasks, up.log.read_text()[-4000:])
        time.sleep(1)
    tid = view.trans_id
    tasks = client.transformation_tasks("e2e_proc", inputs=True)
    inputs = sorted(lfn for t in tasks for lfn in t.inputs)
    assert inputs == [f"{IN}/in{i}.dat" for i in range(4)]  # each input in one task
    for task in tasks:
        lfn = f"/ctao/MC/e2e/{tid}/{task.task_id}.out"
        info = client.files([lfn])[lfn]
        expected = sum(client.files([i])[i].size for i in task.inputs)
        assert info.size == expected
        assert client.get_meta(lfn).own == {"dl": 2}
        assert sorted(r.lfn for r in client.ancestors(lfn)) == sorted(task.inputs)
        job = client.job(task.job_id)
        assert job.job_group == f"{tid:08d}"
    found = ctaprod("dm", "find", "dl=2").split()
    assert len(found) == 2  # every output registered once
    log = ctaprod("trans", "log", "e2e_proc")
    assert "New -> Active" in log


def _start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
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


def test_killed_server_and_agents_restarted_end_with_the_same_result(
    up: SimpleNamespace, tmp_path: Path
) -> None:
    """`ctaprod up` (server, agents, pilot factory) SIGKILLed at random moments while the
    transformation runs, and started again on the same state and database: every input ends
    Processed, every Done task's output is registered once, no input is in two Done tasks."""
    ctaprod, client = cli(tmp_path), up.client
    ctaprod("dm", "meta", "add-field", "particle", "string")
    ctaprod("dm", "meta", "add-field", "dl", "int")
    n = 12
    for i in range(n):
        local = tmp_path / f"in{i}.dat"
        local.write_bytes(f"events of file {i}\n".encode() * 50)
        ctaprod("dm", "put", str(local), f"{IN}/in{i}.dat")
    ctaprod("dm", "meta", "set", IN, "particle=gamma")
    definition = tmp_path / "proc.yaml"
    definition.write_text(YAML.replace("cat *.dat", "sleep 1; cat *.dat"))
    ctaprod("trans", "create", str(definition), "--start")
    proc = up.proc
    rng = random.Random(7)
    restarts = 0
    deadline = time.monotonic() + 240
    while True:
        view = client.transformation("e2e_proc")
        if view.files == {"Processed": n}:
            break
        assert time.monotonic() < deadline, (view.files, view.tasks, up.log.read_text()[-4000:])
        if restarts < 4:
            time.sleep(rng.uniform(0.5, 3.0))
            proc.kill()  # SIGKILL: server and agents at once, mid-cycle or not
            proc.wait(30)
            proc = _start_up(up.env, up.log)
            up.proc = proc
            restarts += 1
        else:
            time.sleep(1)
    assert restarts >= 2, "the transformation ended before the kills: make it longer"
    tid = view.trans_id
    done = client.transformation_tasks("e2e_proc", status=["Done"], inputs=True)
    inputs = [lfn for t in done for lfn in t.inputs]
    assert sorted(inputs) == sorted(set(inputs)) == sorted(f"{IN}/in{i}.dat" for i in range(n))
    outputs = [f"/ctao/MC/e2e/{tid}/{t.task_id}.out" for t in done]
    infos = client.files(outputs)
    assert sorted(infos) == sorted(outputs)
    found = ctaprod("dm", "find", "dl=2").split()
    assert sorted(found) == sorted(outputs)  # registered once, and nothing else
