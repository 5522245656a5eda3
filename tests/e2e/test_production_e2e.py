"""A 2-step generic production end to end on the embedded default (`ctaprod up` as a real
process with its agents, real local pilots, the POSIX SEs, the CLI as a production manager
runs it): Processing of files registered by hand, then Merging of its outputs. Flushing the
production declares the input complete; the production agent cascades to the merge step once
the processing completes; the production ends Completed with every output registered once."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.e2e.test_data_e2e import cli
from tests.e2e.test_embedded import embedded  # noqa: F401  (the `ctaprod up` fixture)

pytestmark = pytest.mark.slow
IN = "/ctao/e2e/pin"
OUT = "/ctao/MC/e2eprod"
YAML = f"""\
name: e2e_prod
base_path: {OUT}
steps:
  - id: "1"
    name: proc
    input_query: e2e_kind=gamma
    transformation:
      type: Processing
      group_size: 1
      job_template:
        Executable: /bin/sh
        Arguments: "-c 'cat *.dat > {{{{output_name}}}}; echo processed'"
        CPUTime: 600
      output_metadata: {{dl: 1}}
      output_lfn_template: {OUT}/proc/{{{{task_id}}}}.dl1
  - id: "2"
    name: merge
    parents: ["1"]
    input_query: dl=1
    transformation:
      type: Merging
      group_size: 10
      job_template:
        Executable: /bin/sh
        Arguments: "-c 'cat *.dl1 > {{{{output_name}}}}; echo merged'"
        CPUTime: 600
      output_metadata: {{dl: 2}}
      output_lfn_template: {OUT}/merged/{{{{task_id}}}}.dl2
"""


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> SimpleNamespace:
    for agent in ("TASK_CREATION", "TASK_SUBMISSION", "TRANSFORMATION_RECOVERY", "PRODUCTION"):
        monkeypatch.setenv(f"CTAPROD_AGENTS__{agent}__INTERVAL", "1")
    env: SimpleNamespace = request.getfixturevalue("embedded")
    return env


def test_a_two_step_production_runs_to_the_end(up: SimpleNamespace, tmp_path: Path) -> None:
    ctaprod, client = cli(tmp_path), up.client
    ctaprod("dm", "meta", "add-field", "e2e_kind", "string")
    ctaprod("dm", "meta", "add-field", "dl", "int")
    for i in range(3):
        local = tmp_path / f"in{i}.dat"
        local.write_bytes(f"events of file {i}\n".encode() * 100)
        ctaprod("dm", "put", str(local), f"{IN}/in{i}.dat")
    ctaprod("dm", "meta", "set", IN, "e2e_kind=gamma")
    definition = tmp_path / "prod.yaml"
    definition.write_text(YAML)
    dry = ctaprod("prod", "dry-run", str(definition))
    assert "e2e_prod.1.proc" in dry, dry
    out = ctaprod("prod", "submit", str(definition))
    assert "(e2e_prod) created, New" in out, out
    ctaprod("prod", "start", "e2e_prod")
    deadline = time.monotonic() + 120
    while client.production("e2e_prod").steps[0].files != {"Processed": 3}:
        assert time.monotonic() < deadline, up.log.read_text()[-4000:]
        time.sleep(1)
    ctaprod("prod", "flush", "e2e_prod")  # no more input will come
    while (view := client.production("e2e_prod")).status != "Completed":
        assert time.monotonic() < deadline, (view, up.log.read_text()[-4000:])
        time.sleep(1)
    proc, merge = view.steps
    assert (proc.trans_status, merge.trans_status) == ("Completed", "Completed")
    assert proc.tasks == {"Done": 3}
    assert (merge.files, merge.tasks) == ({"Processed": 3}, {"Done": 1})
    dl1 = sorted(ctaprod("dm", "find", "dl=1").split())
    dl2 = ctaprod("dm", "find", "dl=2").split()
    assert len(dl1) == 3  # every output registered once
    assert dl2 == [f"{OUT}/merged/{client.transformation_tasks(merge.trans_id)[0].task_id}.dl2"]
    merged = client.files(dl2)[dl2[0]]
    assert merged.size == sum(client.files([f])[f].size for f in dl1)
    assert client.get_meta(dl2[0]).own == {"dl": 2, "prod_step_id": merge.trans_id}
    status = ctaprod("prod", "status", "e2e_prod")
    assert "Completed" in status
    log = ctaprod("prod", "log", "e2e_prod")
    assert "every step completed" in log
    assert "step 2: input complete" in log
