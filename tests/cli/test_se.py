"""``ctaprod se``: list, ban, allow and show against a live server (embedded SEs)."""

from __future__ import annotations

import re

from tests.cli.conftest import Cli


def test_list_ban_show_allow(cli: Cli) -> None:
    out = cli("se", "list").stdout
    assert re.search(r"LOCAL-DISK\s*│\s*posix\s*│\s*LOCAL\.localhost\.org\s*│\s*yes\s*│\s*yes", out)
    assert re.search(r"LOCAL-FAILOVER.*│\s*failover", out)
    assert (
        "Banned LOCAL-DISK for write"
        in cli("se", "ban", "LOCAL-DISK", "--write", "--reason", "disk full").stdout
    )
    cli("se", "ban", "LOCAL-FAILOVER", "--reason", "downtime")
    out = cli("se", "list").stdout
    assert re.search(r"LOCAL-DISK\s*│.*│\s*yes\s*│\s*no\s*│\s*write: disk full", out)
    assert re.search(r"LOCAL-FAILOVER\s*│.*│\s*no\s*│\s*no\s*│\s*downtime", out)
    allowed = cli("se", "allow", "LOCAL-FAILOVER", "--read").stdout
    assert "Allowed LOCAL-FAILOVER for read" in allowed
    assert "Still not allowed: write: downtime" in allowed
    show = cli("se", "show", "LOCAL-FAILOVER").stdout
    rows = re.findall(r"│\s*(read|write)\s*│\s*(yes|no)\s*│\s*(\w*)\s*│\s*admin\s*│", show)
    assert rows == [("read", "yes", ""), ("write", "no", "downtime"), ("read", "no", "downtime")]
    assert re.search(r"Write reason\s*│\s*downtime", show)
    assert re.search(r"Groups\s*│\s*failover", show)


def test_refusals(cli: Cli) -> None:
    assert cli("se", "ban", "LOCAL-DISK", code=2).exit_code == 2  # --reason is required
    err = cli("se", "ban", "NOPE", "--reason", "x", code=1).stderr
    assert "no storage element 'NOPE'" in err
    assert "NOPE" in cli("se", "show", "NOPE", code=1).stderr
