"""``ctaprod admin ...`` against a live server: users, groups, members, tokens, sites."""

from __future__ import annotations

import re
import stat

import pytest

from ctaprod.client.http import Client
from tests.cli.conftest import Cli


def test_users_groups_and_members(cli: Cli) -> None:
    cli("admin", "group", "add", "lst_users", "--property", "NormalUser", "--share", "2",
        "--description", "LST analysers")  # fmt: skip
    groups = cli("admin", "group", "list").stdout
    assert re.search(r"lst_users\tNormalUser\t2\tLST analysers", groups)
    cli("admin", "group", "set", "lst_users", "--share", "3",
        "--property", "NormalUser", "--property", "ProductionManagement")  # fmt: skip
    groups = cli("admin", "group", "list").stdout
    assert re.search(r"lst_users\tNormalUser, ProductionManagement\t3", groups)
    assert cli("admin", "group", "set", "lst_users", code=2).exit_code == 2
    assert cli("admin", "group", "add", "x", "--property", "Wizard", code=2).exit_code == 2

    assert (
        "Added user alice in ctao_user"
        in cli(
            "admin", "user", "add", "alice", "--group", "ctao_user", "--email", "a@cta.org"
        ).stdout
    )
    cli("admin", "member", "add", "alice", "lst_users")
    users = cli("admin", "user", "list").stdout
    assert re.search(r"alice\ta@cta\.org\tyes\tctao_user, lst_users", users)
    cli("admin", "member", "remove", "alice", "lst_users")
    cli("admin", "user", "disable", "alice")
    assert re.search(r"alice\ta@cta\.org\tno", cli("admin", "user", "list").stdout)
    cli("admin", "user", "enable", "alice")
    duplicate = cli("admin", "user", "add", "alice", code=1)
    assert "(HTTP 409)" in duplicate.stderr
    cli("admin", "user", "delete", "alice")
    assert "alice" not in cli("admin", "user", "list").stdout


def test_token_issue_save_list_revoke(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("admin", "user", "add", "bob", "--group", "ctao_user")
    issued = cli("admin", "token", "issue", "bob", "ctao_user", "--days", "2", "--save")
    token = issued.stdout.strip()
    assert len(token.splitlines()) == 1
    saved = cli.config_dir / "token"
    assert saved.read_text().strip() == token
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    # Without CTAPROD_TOKEN the saved token is used.
    monkeypatch.delenv("CTAPROD_TOKEN")
    assert re.search(r"bob\tctao_user", cli("whoami").stdout)
    monkeypatch.setenv("CTAPROD_TOKEN", cli.admin_token)

    pilot = cli("admin", "token", "issue", "pilot", "ctao_pilot", "--kind", "pilot")
    assert "(pilot)" in pilot.stderr
    listing = cli("admin", "token", "list", "--user", "bob").stdout
    with Client(cli.url, cli.admin_token) as client:
        [info] = client.tokens("bob")
    assert info.jti in listing
    cli("admin", "token", "revoke", info.jti)
    refused = cli("--token", token, "whoami", code=1)
    assert "(HTTP 401)" in refused.stderr


def test_non_admins_are_refused(cli: Cli) -> None:
    cli("admin", "user", "add", "carol", "--group", "ctao_user")
    token = cli("admin", "token", "issue", "carol", "ctao_user").stdout.strip()
    result = cli("--token", token, "admin", "user", "list", code=1)
    assert "(HTTP 403)" in result.stderr


def test_site_ban_and_allow(cli: Cli) -> None:
    cli("admin", "site", "ban", "LCG.CNAF.it", "--reason", "storage downtime")
    sites = cli("admin", "site", "list").stdout
    assert re.search(r"LCG\.CNAF\.it\tBanned\tstorage downtime\tadmin", sites)
    cli("admin", "site", "allow", "LCG.CNAF.it")
    assert re.search(r"LCG\.CNAF\.it\tActive", cli("admin", "site", "list").stdout)
    assert cli("admin", "site", "ban", "LCG.CNAF.it", code=2).exit_code == 2  # --reason needed
