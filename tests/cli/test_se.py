"""``ctaprod se``: list, ban, allow and show against a live server (embedded SEs)."""

from __future__ import annotations

import re

from tests.cli.conftest import Cli


def test_list_ban_show_allow(cli: Cli) -> None:
    out = cli("se", "list").stdout
    assert re.search(r"LOCAL-DISK\tposix\tLOCAL\.localhost\.org\tyes\tyes", out)
    assert re.search(r"LOCAL-FAILOVER.*\tfailover", out)
    assert (
        "Banned LOCAL-DISK for write"
        in cli("se", "ban", "LOCAL-DISK", "--write", "--reason", "disk full").stdout
    )
    cli("se", "ban", "LOCAL-FAILOVER", "--reason", "downtime")
    out = cli("se", "list").stdout
    assert re.search(r"LOCAL-DISK\t.*\tyes\tno\twrite: disk full", out)
    assert re.search(r"LOCAL-FAILOVER\t.*\tno\tno\tdowntime", out)
    allowed = cli("se", "allow", "LOCAL-FAILOVER", "--read").stdout
    assert "Allowed LOCAL-FAILOVER for read" in allowed
    assert "Still not allowed: write: downtime" in allowed
    show = cli("se", "show", "LOCAL-FAILOVER").stdout
    rows = re.findall(r"\t(read|write)\t(yes|no)\t(\w*)\tadmin$", show, re.MULTILINE)
    assert rows == [("read", "yes", ""), ("write", "no", "downtime"), ("read", "no", "downtime")]
    assert re.search(r"Write reason\tdowntime", show)
    assert re.search(r"Groups\tfailover", show)


def test_refusals(cli: Cli) -> None:
    assert cli("se", "ban", "LOCAL-DISK", code=2).exit_code == 2  # --reason is required
    err = cli("se", "ban", "NOPE", "--reason", "x", code=1).stderr
    assert "no storage element 'NOPE'" in err
    assert "NOPE" in cli("se", "show", "NOPE", code=1).stderr
