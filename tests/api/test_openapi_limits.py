"""The OpenAPI declares the limits and the errors, for every route (a new route cannot
forget them): every integer parameter has bounds, every operation declares the error answers
with the real error body."""

from __future__ import annotations

from typing import Any

from ctaprod.api.app import ERROR_RESPONSES


def _operations(api: Any) -> list[tuple[str, str, dict[str, Any]]]:
    schema = api.openapi()
    return [
        (path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()
    ]


def _integers(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [schema] if schema.get("type") == "integer" else []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found.extend(_integers(sub))
    if "items" in schema:
        found.extend(_integers(schema["items"]))
    return found


def test_every_integer_parameter_is_bounded(api: Any) -> None:
    unbounded = [
        f"{method.upper()} {path} {param['name']}"
        for path, method, op in _operations(api)
        for param in op.get("parameters", [])
        for schema in _integers(param.get("schema", {}))
        if "maximum" not in schema
    ]
    assert unbounded == []


def test_every_operation_declares_the_error_answers(api: Any) -> None:
    for path, method, op in _operations(api):
        for status in ERROR_RESPONSES:
            declared = op["responses"].get(str(status))
            assert declared is not None, f"{method.upper()} {path} does not declare {status}"
            schema = declared["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}
