"""Extensions (e.g. the CTA one) plug in through the entry point group ``ctaprod.extensions``.

Each entry point is a callable taking no argument: it registers what it brings (job types in
``core.trans_types.TYPES``, input formats in ``core.productions.FORMATS``, ...) and returns
the metadata fields it needs (name -> type: int, float, string, datetime). :func:`install` loads
every entry point once per process, then declares the fields the catalog does not know yet,
with the production system's own ``prod_step_id`` (int). The composition root calls it where
the services are built, so the server, ``ctaprod up``, the agents and the tests all have
the extensions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from importlib.metadata import entry_points

from sqlalchemy.exc import IntegrityError

from ctaprod.core.metaquery import FieldType
from ctaprod.core.productions import STEP_FIELD
from ctaprod.logic.context import Context

log = logging.getLogger("ctaprod.server.extensions")
GROUP = "ctaprod.extensions"
# What the production system itself needs: its steps' outputs carry their transformation id.
BUILTIN_FIELDS: Mapping[str, FieldType] = {STEP_FIELD: FieldType.INT}


@functools.cache
def load_extensions(
    names: tuple[str, ...] | None = None,
) -> tuple[tuple[str, FieldType], ...]:
    """Call the entry points of the group (``names``: those only; None: every one) once per
    process; the fields they return. An unknown name is an error, not silence."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    unknown = sorted(set(names or ()) - set(found))
    if unknown:
        raise ValueError(
            f"extensions: {', '.join(unknown)} not installed (installed: "
            f"{', '.join(sorted(found)) or 'none'})"
        )
    fields: dict[str, FieldType] = {}
    for name in sorted(found if names is None else names):
        returned = found[name].load()()
        for field, ftype in dict(returned or {}).items():
            fields[str(field)] = FieldType.parse(str(ftype))
        log.info("extension %s loaded (%d metadata fields)", name, len(returned or {}))
    return tuple(fields.items())


def declare_missing(ctx: Context, fields: Mapping[str, FieldType]) -> list[str]:
    """Declare the fields the catalog does not know (names compared case-insensitively);
    the names declared. A field declared with another type is left as it is, loudly."""
    declared: list[str] = []
    with ctx.db.write() as conn:
        known = {n.lower(): (n, t) for n, t in ctx.meta.field_types(conn).items()}
        for name, ftype in fields.items():
            have = known.get(name.lower())
            if have is not None:
                if have[1] != ftype:
                    log.warning(
                        "metadata field %s is declared as %s, an extension wants %s",
                        have[0], have[1], ftype,
                    )  # fmt: skip
                continue
            try:
                with conn.begin_nested():
                    ctx.meta.declare_field(conn, name, ftype, ctx.clock(), "declared at start")
                declared.append(name)
            except IntegrityError:  # another process declared it meanwhile
                continue
    return declared


def install(ctx: Context) -> list[str]:
    """Load the extensions (once) and declare the metadata fields missing."""
    names = ctx.settings.extensions
    loaded = load_extensions(None if names is None else tuple(sorted(set(names))))
    fields = {**BUILTIN_FIELDS, **dict(loaded)}
    return declare_missing(ctx, fields)
