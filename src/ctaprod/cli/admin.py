"""``ctaprod admin ...``: users, groups, memberships, tokens and the site mask."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.text import Text

from ctaprod.cli.common import client, state
from ctaprod.cli.output import emit, fmt, fmt_time, print_note, say, structured, table
from ctaprod.client import config
from ctaprod.core.properties import Property

app = typer.Typer(help="Administer users, groups, tokens and sites.", no_args_is_help=True)
users = typer.Typer(help="Users.", no_args_is_help=True)
groups = typer.Typer(help="Groups, their properties and shares.", no_args_is_help=True)
members = typer.Typer(help="Group membership.", no_args_is_help=True)
tokens = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
sites = typer.Typer(help="The site mask.", no_args_is_help=True)
app.add_typer(users, name="user")
app.add_typer(groups, name="group")
app.add_typer(members, name="member")
app.add_typer(tokens, name="token")
app.add_typer(sites, name="site")

UserArg = Annotated[str, typer.Argument(help="User name.", show_default=False)]
GroupArg = Annotated[str, typer.Argument(help="Group name.", show_default=False)]


class TokenKindChoice(StrEnum):
    USER = "user"
    PILOT = "pilot"


# --- users ------------------------------------------------------------------------------
@users.command("list")
@structured
def list_users(ctx: typer.Context) -> None:
    """List users and their groups."""
    with client(ctx) as cli:
        rows = cli.users()
    tbl = table("User", "Email", "Enabled", "Groups")
    for user in rows:
        tbl.add_row(user.name, user.email, fmt(user.enabled), fmt(user.groups))
    emit(rows, tbl)


@users.command("add")
def add_user(
    ctx: typer.Context,
    name: UserArg,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group to join (repeat).")
    ] = None,
    email: Annotated[str, typer.Option(help="Contact address.")] = "",
) -> None:
    """Create a user, optionally in some groups."""
    with client(ctx) as cli:
        cli.add_user(name, group or [], email)
    say(f"Added user {name}" + (f" in {', '.join(group)}" if group else ""))


@users.command("enable")
def enable_user(ctx: typer.Context, name: UserArg) -> None:
    """Let a user in again."""
    with client(ctx) as cli:
        cli.set_user_enabled(name, True)
    say(f"Enabled user {name}")


@users.command("disable")
def disable_user(ctx: typer.Context, name: UserArg) -> None:
    """Refuse a user's tokens from now on."""
    with client(ctx) as cli:
        cli.set_user_enabled(name, False)
    say(f"Disabled user {name}")


@users.command("delete")
def delete_user(ctx: typer.Context, name: UserArg) -> None:
    """Delete a user (their tokens stop working)."""
    with client(ctx) as cli:
        cli.delete_user(name)
    say(f"Deleted user {name}")


# --- groups -----------------------------------------------------------------------------
PropertyOpt = Annotated[
    list[Property] | None,
    typer.Option("--property", "-p", case_sensitive=False, help="A property (repeat)."),
]


@groups.command("list")
@structured
def list_groups(ctx: typer.Context) -> None:
    """List groups with their properties and fair-share."""
    with client(ctx) as cli:
        rows = cli.groups()
    tbl = table("Group", "Properties", "Share", "Description")
    for group in rows:
        tbl.add_row(group.name, fmt(group.properties), fmt(group.share), group.description)
    emit(rows, tbl)


@groups.command("add")
def add_group(
    ctx: typer.Context,
    name: GroupArg,
    prop: PropertyOpt = None,
    share: Annotated[float, typer.Option(min=0, help="Fair-share weight.")] = 1.0,
    description: Annotated[str, typer.Option(help="What the group is for.")] = "",
) -> None:
    """Create a group."""
    with client(ctx) as cli:
        cli.add_group(name, [p.value for p in prop or []], share, description)
    say(f"Added group {name}")


@groups.command("set")
def set_group(
    ctx: typer.Context,
    name: GroupArg,
    prop: Annotated[
        list[Property] | None,
        typer.Option(
            "--property", "-p", case_sensitive=False, help="Replace the properties (repeat)."
        ),
    ] = None,
    share: Annotated[float | None, typer.Option(min=0, help="New fair-share weight.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
) -> None:
    """Change a group's properties, share or description."""
    changes: dict[str, Any] = {}
    if prop:
        changes["properties"] = [p.value for p in prop]
    if share is not None:
        changes["share"] = share
    if description is not None:
        changes["description"] = description
    if not changes:
        raise typer.BadParameter("nothing to change: give --property, --share or --description")
    with client(ctx) as cli:
        cli.update_group(name, **changes)
    say(f"Updated group {name}: {', '.join(sorted(changes))}")


# --- members ----------------------------------------------------------------------------
@members.command("add")
def add_member(ctx: typer.Context, user: UserArg, group: GroupArg) -> None:
    """Put a user in a group."""
    with client(ctx) as cli:
        cli.add_member(user, group)
    say(f"Added {user} to {group}")


@members.command("remove")
def remove_member(ctx: typer.Context, user: UserArg, group: GroupArg) -> None:
    """Take a user out of a group (their tokens for it stop working)."""
    with client(ctx) as cli:
        cli.remove_member(user, group)
    say(f"Removed {user} from {group}")


# --- tokens -----------------------------------------------------------------------------
@tokens.command("issue")
def issue_token(
    ctx: typer.Context,
    user: UserArg,
    group: GroupArg,
    kind: Annotated[TokenKindChoice, typer.Option(help="Token kind.")] = TokenKindChoice.USER,
    days: Annotated[
        float | None, typer.Option(min=0, help="Lifetime in days (default: the server's).")
    ] = None,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    save: Annotated[
        bool, typer.Option(help="Store it (mode 0600) as this client's token.")
    ] = False,
) -> None:
    """Issue a token for USER acting in GROUP; prints the token alone on stdout."""
    with client(ctx) as cli:
        issued = cli.issue_token(user, group, kind.value, days, description)
    typer.echo(issued.token)
    print_note(
        f"token {issued.jti} for {issued.user}/{issued.group} ({issued.kind}), "
        f"expires {fmt_time(issued.expires_at)}"
    )
    if save:
        directory = config.save(state(ctx).config().url, issued.token)
        print_note(f"saved in {directory / 'token'}")


@tokens.command("list")
@structured
def list_tokens(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
) -> None:
    """List issued tokens (not their secret value)."""
    with client(ctx) as cli:
        rows = cli.tokens(user)
    tbl = table("JTI", "User", "Group", "Kind", "Issued", "Expires", "Revoked", "Description")
    for tok in rows:
        tbl.add_row(
            tok.jti,
            tok.user,
            tok.group,
            tok.kind,
            fmt_time(tok.issued_at),
            fmt_time(tok.expires_at),
            fmt_time(tok.revoked_at),
            tok.description,
        )
    emit(rows, tbl)


@tokens.command("revoke")
def revoke_token(
    ctx: typer.Context, jti: Annotated[str, typer.Argument(help="Token ID (see token list).")]
) -> None:
    """Revoke a token."""
    with client(ctx) as cli:
        cli.revoke_token(jti)
    say(f"Revoked token {jti}")


# --- sites ------------------------------------------------------------------------------
SiteArg = Annotated[str, typer.Argument(help="Site name, e.g. LCG.CNAF.it.", show_default=False)]


@sites.command("list")
@structured
def list_sites(ctx: typer.Context) -> None:
    """Show the site mask."""
    with client(ctx) as cli:
        rows = cli.sites()
    tbl = table("Site", "Status", "Reason", "Changed by", "Changed at")
    for site in rows:
        style = "red" if site.status == "Banned" else "green"
        tbl.add_row(
            site.name,
            Text(site.status, style=style),
            site.reason,
            site.updated_by,
            fmt_time(site.updated_at),
        )
    emit(rows, tbl)


@sites.command("ban")
def ban_site(
    ctx: typer.Context,
    name: SiteArg,
    reason: Annotated[str, typer.Option(help="Why (shown in site list).")],
) -> None:
    """Ban a site: it gets no more jobs."""
    with client(ctx) as cli:
        cli.set_site(name, "Banned", reason)
    say(f"Banned site {name}")


@sites.command("allow")
def allow_site(
    ctx: typer.Context,
    name: SiteArg,
    reason: Annotated[str, typer.Option(help="Why (shown in site list).")] = "",
) -> None:
    """Allow a banned site again."""
    with client(ctx) as cli:
        cli.set_site(name, "Active", reason)
    say(f"Allowed site {name}")
