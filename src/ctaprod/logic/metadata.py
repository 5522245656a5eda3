"""Metadata use cases: fields, values on directories and files, queries."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from ctaprod.core.metaquery import MetaSchema, Scalar, check_field_name, coerce
from ctaprod.logic.context import Context


def check_values(ctx: Context, conn: Connection, values: Mapping[str, object]) -> dict[str, Scalar]:
    """``values`` coerced to their declared types; ``InvalidInput`` naming the field for an
    undeclared field or a value of the wrong type."""
    if not values:
        return {}
    schema = MetaSchema(ctx.meta.field_types(conn))
    out: dict[str, Scalar] = {}
    for name, value in values.items():
        ftype = schema.field_type(check_field_name(name))
        out[name] = coerce(name, ftype, value)
    return out
