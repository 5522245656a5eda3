"""Storage element management: configuration plus run-time bans, access checks, groups.

An SE may be read (written) when its configuration allows it and no operator banned it;
the reason shown is the ban's reason, or "disabled in the configuration".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping

from ctaprod.core.errors import Forbidden, InvalidInput, NotFound, Unavailable
from ctaprod.core.identity import Identity
from ctaprod.core.jobs import LFN_PREFIX, JobDescription
from ctaprod.core.properties import Property, TokenKind
from ctaprod.core.settings import StorageElementConfig
from ctaprod.core.storage import (
    Access,
    BanAccess,
    SEHistoryEntry,
    StorageElementDetail,
    StorageElementInfo,
    is_secret_option,
)
from ctaprod.logic.authz import refuse_pilot, require_operator
from ctaprod.logic.catalog_access import check_attempt, resolve
from ctaprod.logic.context import Context

__all__ = [
    "allow",
    "ban",
    "check_access",
    "default_se",
    "element",
    "elements",
    "elements_for",
    "group",
    "history",
    "may_see_secrets",
    "secret_ses",
    "ses_at_site",
    "show",
    "show_for",
    "usable",
]

CONFIG_DISABLED = "disabled in the configuration"
HIDDEN = "***"


def _configs(ctx: Context) -> dict[str, StorageElementConfig]:
    return ctx.settings.data_storage_elements()


def _config(ctx: Context, se: str) -> StorageElementConfig:
    config = _configs(ctx).get(se)
    if config is None:
        known = ", ".join(sorted(_configs(ctx)))
        raise NotFound(f"no storage element {se!r} (known: {known})", se=se)
    return config


def may_see_secrets(ident: Identity) -> bool:
    """Whether ``ident`` sees the credentials of every SE: Admin user tokens only (they
    configure them). Job tokens see those of their own job's SEs (:func:`secret_ses`);
    pilot tokens and other users never see any."""
    return ident.kind is TokenKind.USER and ident.has(Property.ADMIN)


def secret_ses(ctx: Context, ident: Identity) -> set[str] | None:
    """The SEs whose credentials ``ident`` may see (None: all of them).

    A job token, while its attempt is the job's current one and the job is live, gets the
    SEs its wrapper transfers with: its OutputSE (all non-failover SEs when it names none,
    as the wrapper then tries them in turn), the failover group, and the SEs holding
    replicas of its InputData and LFN input sandboxes. Anyone else: none (Admin: all).
    """
    if may_see_secrets(ident):
        return None
    if ident.kind is not TokenKind.JOB or ident.job_id is None:
        return set()
    with ctx.db.read() as conn:
        try:
            check_attempt(ctx, conn, ident)
        except Forbidden:  # a superseded or finished attempt transfers nothing
            return set()
        text = ctx.jobs.description(conn, ident.job_id)
        if text is None:
            return set()
        desc = JobDescription.model_validate_json(text)
        groups = ctx.settings.data_se_groups()
        failover = set(groups.get("failover", []))
        wanted = set(desc.output_se) or {n for n in _configs(ctx) if n not in failover}
        wanted |= failover
        n = len(LFN_PREFIX)
        sandboxes = (s[n:] for s in desc.input_sandbox if s[:n].upper() == LFN_PREFIX)
        lfns = [*desc.input_data, *sandboxes]
        if lfns:
            files, _ = resolve(ctx, conn, lfns)
            replicas = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
            wanted.update(se for ses in replicas.values() for se in ses)
    return wanted


def _info(
    name: str,
    config: StorageElementConfig,
    row: RowMapping | None,
    groups: Mapping[str, list[str]],
    secrets: bool,
) -> StorageElementInfo:
    access: dict[str, Any] = {}
    for kind in ("read", "write"):
        if not getattr(config, kind):
            allowed, reason = False, CONFIG_DISABLED
        elif row is not None and not row[f"{kind}_allowed"]:
            allowed, reason = False, str(row[f"{kind}_reason"]) or "banned"
        else:
            allowed, reason = True, ""
        access[kind], access[f"{kind}_reason"] = allowed, reason
    options = {
        k: (v if secrets or not is_secret_option(k) else HIDDEN) for k, v in config.options.items()
    }
    return StorageElementInfo(
        name=name,
        plugin=config.plugin,
        endpoint=config.endpoint,
        base_path=config.base_path,
        site=config.site,
        groups=sorted(g for g, members in groups.items() if name in members),
        options=options,
        **access,
    )


def elements(ctx: Context, *, secrets: bool | Collection[str] = False) -> list[StorageElementInfo]:
    """Every data SE with its configuration and current access (credentials hidden unless
    ``secrets`` is True or names the SE)."""
    configs = _configs(ctx)
    with ctx.db.read() as conn:
        rows = ctx.se_status.statuses(conn, list(configs))
    groups = ctx.settings.data_se_groups()
    return [_info(n, c, rows.get(n), groups, _shows(secrets, n)) for n, c in configs.items()]


def _shows(secrets: bool | Collection[str], se: str) -> bool:
    return secrets if isinstance(secrets, bool) else se in secrets


def elements_for(ctx: Context, ident: Identity) -> list[StorageElementInfo]:
    """Every data SE as ``ident`` may see it (credentials per :func:`secret_ses`)."""
    refuse_pilot(ident, "list storage elements")
    shown = secret_ses(ctx, ident)
    return elements(ctx, secrets=True if shown is None else shown)


def show_for(ctx: Context, ident: Identity, se: str) -> StorageElementDetail:
    """One SE and its history as ``ident`` may see it."""
    refuse_pilot(ident, "list storage elements")
    shown = secret_ses(ctx, ident)
    return show(ctx, se, secrets=shown is None or se in shown)


def element(ctx: Context, se: str, *, secrets: bool = False) -> StorageElementInfo:
    """One SE with its current access; NotFound for an unknown name."""
    config = _config(ctx, se)
    with ctx.db.read() as conn:
        row = ctx.se_status.statuses(conn, [se]).get(se)
    return _info(se, config, row, ctx.settings.data_se_groups(), secrets)


def _history_entries(rows: Sequence[RowMapping]) -> list[SEHistoryEntry]:
    return [
        SEHistoryEntry(
            se=r["se"],
            access=r["access"],
            allowed=bool(r["allowed"]),
            reason=r["reason"],
            author=r["author"],
            time=r["time"],
        )
        for r in rows
    ]


def history(ctx: Context, se: str, limit: int = 100) -> list[SEHistoryEntry]:
    """The latest access changes of ``se``, newest first."""
    _config(ctx, se)
    with ctx.db.read() as conn:
        return _history_entries(ctx.se_status.history(conn, se, limit))


def show(ctx: Context, se: str, *, secrets: bool = False) -> StorageElementDetail:
    """An SE and its history of bans."""
    return StorageElementDetail(element=element(ctx, se, secrets=secrets), history=history(ctx, se))


def check_access(ctx: Context, se: str, access: Access) -> StorageElementInfo:
    """NotFound for an unknown SE, Unavailable (503) naming the reason when ``access`` is
    not allowed; the SE's info otherwise."""
    info = element(ctx, se)
    if not getattr(info, access):
        reason = getattr(info, f"{access}_reason")
        raise Unavailable(
            f"storage element {se} is banned for {access}: {reason}",
            se=se,
            access=access,
            reason=reason,
        )
    return info


def usable(ctx: Context, ses: Sequence[str], access: Access) -> tuple[list[str], dict[str, str]]:
    """Split ``ses`` into those allowing ``access`` (in order) and the others with why."""
    configs = _configs(ctx)
    with ctx.db.read() as conn:
        rows = ctx.se_status.statuses(conn, [s for s in ses if s in configs])
    groups = ctx.settings.data_se_groups()
    ok: list[str] = []
    refused: dict[str, str] = {}
    for se in ses:
        if se not in configs:
            refused[se] = "unknown storage element"
            continue
        info = _info(se, configs[se], rows.get(se), groups, False)
        if getattr(info, access):
            ok.append(se)
        else:
            refused[se] = f"banned for {access}: {getattr(info, f'{access}_reason')}"
    return ok, refused


def _change(
    ctx: Context, ident: Identity, se: str, access: BanAccess, allowed: bool, reason: str
) -> StorageElementInfo:
    require_operator(ident, f"change the access of {se}")
    _config(ctx, se)
    if access not in ("read", "write", "both"):
        raise InvalidInput(f"access must be read, write or both, not {access!r}")
    reason = reason.strip()
    if not allowed and not reason:
        raise InvalidInput(f"banning {se} needs a reason")
    if len(reason) > 512:
        raise InvalidInput("the reason is longer than 512 characters")
    accesses = ["read", "write"] if access == "both" else [access]
    with ctx.db.write() as conn:
        ctx.se_status.set_access(conn, se, accesses, allowed, reason, ident.user, ctx.clock())
    return element(ctx, se)


def ban(
    ctx: Context, ident: Identity, se: str, access: BanAccess, reason: str
) -> StorageElementInfo:
    """Ban ``se`` for read, write or both (Operator or Admin; a reason is required)."""
    return _change(ctx, ident, se, access, False, reason)


def allow(
    ctx: Context, ident: Identity, se: str, access: BanAccess, reason: str = ""
) -> StorageElementInfo:
    """Lift a ban (Operator or Admin); the configured access still applies."""
    return _change(ctx, ident, se, access, True, reason)


def ses_at_site(ctx: Context, site: str) -> list[str]:
    """The data SEs located at ``site``, in configuration order."""
    return [name for name, config in _configs(ctx).items() if config.site == site]


def group(ctx: Context, name: str) -> list[str]:
    """The SEs of group ``name`` (e.g. ``failover``); empty for an unknown group."""
    return list(ctx.settings.data_se_groups().get(name, []))


def default_se(ctx: Context) -> str:
    """The SE that uploads naming none go to."""
    return ctx.settings.default_data_se()
