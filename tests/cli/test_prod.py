"""``ctaprod prod ...`` against a live server: submit and dry-run from YAML, list, show,
status, log, drive; bad definitions are a clear message naming the step and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctaprod.core.identity import Identity
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.logic import metadata as M
from tests.cli.conftest import Cli

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
YAML = """\
name: cli_prod
base_path: /ctao/MC/CLI
steps:
  - id: "1"
    name: sim
    transformation:
      type: MCSimulation
      max_tasks: 2
      job_template: {Executable: sim.sh, Arguments: "{{run_number}}"}
      output_lfn_template: /ctao/MC/CLI/sim/{{run_number}}.simtel
      output_metadata: {stage: 0}
  - id: "2"
    parents: ["1"]
    transformation:
      type: Processing
      group_size: 1
      job_template: {Executable: proc.sh, Arguments: "{{input_lfns}}"}
      output_lfn_template: /ctao/MC/CLI/dl1/{{task_id}}.h5
      output_metadata: {stage: 1}
"""


def test_prod_commands(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    M.add_field(cli.services.ctx, ADMIN, FieldDeclaration(name="stage", type="int"))
    path = tmp_path / "prod.yaml"
    path.write_text(YAML)
    dry = cli("prod", "dry-run", str(path)).stdout
    assert "cli_prod.1.sim" in dry
    assert "0 productions" in cli("prod", "list").stderr
    out = cli("prod", "submit", str(path)).stdout
    assert "(cli_prod) created, New" in out
    assert "cli_prod" in cli("prod", "list").stdout
    shown = cli("prod", "show", "cli_prod").stdout
    assert "cli_prod.2" in shown
    assert "NotValidated" in shown
    assert "is Active" in cli("prod", "start", "cli_prod").stdout
    assert "Active" in cli("prod", "start", "cli_prod", code=1).stderr
    status = cli("prod", "status", "cli_prod").stdout
    assert "cli_prod" in status
    assert "is Stopped" in cli("prod", "stop", "cli_prod").stdout
    assert "2 more MC tasks" in cli("prod", "extend", "cli_prod", "2").stdout
    log = cli("prod", "log", "cli_prod").stdout
    assert "submit" in log
    assert "Active -> Stopped" in log
    assert '"name": "cli_prod"' in cli("prod", "show", "cli_prod", "--json").stdout
    report = tmp_path / "report.json"
    invalid = cli("prod", "validate", "cli_prod", "--report", str(report), code=1).stdout
    assert "NOT VALID" in invalid  # its MC step never ran: outputs missing
    assert json.loads(report.read_text())["valid"] is False
    assert "Invalid" in cli("prod", "show", "cli_prod").stdout


def test_bad_definitions_name_the_step_and_key(cli: Cli, tmp_path: Path) -> None:
    M.add_field(cli.services.ctx, ADMIN, FieldDeclaration(name="stage", type="int"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(YAML.replace("group_size: 1", "grup_size: 1"))
    err = cli("prod", "submit", str(bad), code=1).stderr
    assert "step 2" in err
    assert "group_size" in err
    bad.write_text(YAML.replace('parents: ["1"]', 'parents: ["7"]'))
    assert "unknown parent step '7'" in cli("prod", "submit", str(bad), code=1).stderr
    assert "no production 'nope'" in cli("prod", "show", "nope", code=1).stderr
