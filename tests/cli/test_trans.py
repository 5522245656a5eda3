"""``ctaprod trans ...`` against a live server: create (and dry run) from YAML, list, show,
files, tasks, log, drive; bad definitions are a clear message and exit code 1."""

from __future__ import annotations

from pathlib import Path

from ctaprod.core.identity import Identity
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.logic import metadata as M
from tests.cli.conftest import Cli
from tests.db.test_metadata_tree import Tree

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
BASE = "/ctao/MC/Prod6"
YAML = """\
name: proc_gamma
type: Processing
input_query: particle=gamma
group_size: 2
job_template:
  Executable: process.sh
  Arguments: "{{input_lfns}}"
output_lfn_template: /ctao/MC/Prod6/out/{{transformation_id}}/{{task_id}}.h5
"""


def _files(cli: Cli) -> None:
    ctx = cli.services.ctx
    M.add_field(ctx, ADMIN, FieldDeclaration(name="particle", type="string"))
    tree = Tree()
    with ctx.db.write() as conn:
        tree.add_files(conn, [f"{BASE}/gamma/f{i}" for i in range(3)])
    M.set_metadata(ctx, ADMIN, f"{BASE}/gamma", {"particle": "gamma"})


def test_trans_commands(cli: Cli, tmp_path: Path) -> None:
    _files(cli)
    path = tmp_path / "proc.yaml"
    path.write_text(YAML)
    dry = cli("trans", "create", str(path), "--dry-run").stdout
    assert "Files matching today\t3" in dry
    assert f"{BASE}/gamma/f2" in dry
    assert "0 transformations" in cli("trans", "list").stderr
    out = cli("trans", "create", str(path)).stdout
    assert "(proc_gamma) created, New; 3 input files attached" in out
    listed = cli("trans", "list").stdout
    assert "proc_gamma" in listed
    assert "3 Unused" in listed
    shown = cli("trans", "show", "proc_gamma").stdout
    assert "particle=gamma" in shown
    assert "Files" in shown
    files = cli("trans", "files", "proc_gamma").stdout
    assert f"{BASE}/gamma/f0" in files
    assert "is Active" in cli("trans", "start", "proc_gamma").stdout
    err = cli("trans", "start", "proc_gamma", code=1).stderr
    assert "Active" in err
    log = cli("trans", "log", "proc_gamma").stdout
    assert "create" in log
    assert "New -> Active" in log
    assert "0 tasks" in cli("trans", "tasks", "proc_gamma").stderr
    assert '"name": "proc_gamma"' in cli("trans", "show", "proc_gamma", "--json").stdout
    assert "3 files match, 0 newly attached" in cli("trans", "rescan", "proc_gamma").stdout


def test_bad_definitions_are_clear_errors(cli: Cli, tmp_path: Path) -> None:
    _files(cli)
    bad = tmp_path / "bad.yaml"
    bad.write_text(YAML.replace("group_size: 2", "gruop_size: 2"))
    err = cli("trans", "create", str(bad), code=1).stderr
    assert "group_size" in err
    bad.write_text(YAML.replace("particle=gamma", "partcle=gamma"))
    assert "input_query" in cli("trans", "create", str(bad), code=1).stderr
    bad.write_text("name: [unclosed")
    assert (
        "cannot read the transformation definition"
        in cli("trans", "create", str(bad), code=1).stderr
    )
    missing = cli("trans", "create", str(tmp_path / "nope.yaml"), code=1).stderr
    assert "cannot read" in missing
    assert "Traceback" not in missing
    assert "no transformation 'nope'" in cli("trans", "show", "nope", code=1).stderr
