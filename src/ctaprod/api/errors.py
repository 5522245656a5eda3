"""Domain errors -> HTTP status codes with a JSON body; never a bare 500 with a traceback.

Every error body has the shape of :class:`ctaprod.core.schemas.ErrorBody` and survives any
input: text from the request is echoed truncated and made encodable (no lone surrogate, no
NUL), and no server directory (state directory, temporary directory) appears in it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, StatementError
from starlette.exceptions import HTTPException

from ctaprod.core import errors as e
from ctaprod.db.engine import is_deadlock

log = logging.getLogger("ctaprod.api")

STATUS: dict[type[e.CtaprodError], int] = {
    e.InvalidInput: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.InvalidTransition: 409,
    e.Conflict: 409,
    e.TooLarge: 413,
    e.Unavailable: 503,
}
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}
MAX_ECHO = 200  # characters of a request's text an error body repeats
MAX_ITEMS = 20


def status_of(exc: e.CtaprodError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


class Scrubber:
    """Makes any value safe to put in an error body."""

    def __init__(self, hidden: Iterable[Path | str] = ()) -> None:
        dirs = {str(Path(tempfile.gettempdir()).resolve()), tempfile.gettempdir()}
        for path in hidden:
            dirs.add(str(path))
            with contextlib.suppress(OSError):
                dirs.add(str(Path(path).resolve()))
        # Longest first: a state directory under the temporary directory is hidden whole.
        self.hidden = sorted((d.rstrip("/") for d in dirs if len(d) > 1), key=len, reverse=True)

    def text(self, value: str, limit: int = 1000) -> str:
        for directory in self.hidden:
            if directory in value:
                value = value.replace(directory, "<server>")
        value = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
        return value if len(value) <= limit else value[:limit] + "..."

    def value(self, value: object, depth: int = 0) -> object:
        if isinstance(value, str):
            return self.text(value, MAX_ECHO if depth else 1000)
        if value is None or isinstance(value, bool | int | float):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
                return self.text(str(value)[:40], MAX_ECHO)
            if (isinstance(value, float) and value != value) or value in (
                float("inf"),
                float("-inf"),
            ):
                return str(value)
            return value
        if depth > 4:
            return "..."
        if isinstance(value, dict):
            items = list(value.items())[:MAX_ITEMS]
            return {self.text(str(k), 100): self.value(v, depth + 1) for k, v in items}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
        return self.text(str(value), MAX_ECHO)


_scrub = Scrubber()


def error_response(
    status: int,
    code: str,
    message: str,
    detail: object = None,
    *,
    scrubber: Scrubber | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    s = scrubber or _scrub
    clean = s.value(detail or {})
    body = {
        "error": code,
        "message": s.text(message),
        "detail": clean if isinstance(clean, dict) else {"value": clean},
    }
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=all_headers or None)


def _validation_errors(errs: list[dict[str, object]]) -> list[dict[str, object]]:
    # "input" echoes what was sent (any size, any text): kept short; "ctx" holds objects.
    return [{k: v for k, v in err.items() if k not in ("ctx", "url")} for err in errs[:MAX_ITEMS]]


def _internal(exc: BaseException, scrubber: Scrubber) -> JSONResponse:
    ident = uuid.uuid4().hex[:12]
    log.error("internal error %s", ident, exc_info=exc)
    return error_response(
        500,
        "internal_error",
        f"internal error {ident} ({type(exc).__name__}); see the server log",
        {"id": ident},
        scrubber=scrubber,
    )


def install(app: FastAPI, hidden_paths: Iterable[Path | str] = ()) -> None:
    """Register the handlers; ``hidden_paths`` (the state directory...) never appear in a body."""
    scrubber = Scrubber(hidden_paths)

    def domain(exc: e.CtaprodError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message, exc.detail, scrubber=scrubber)

    @app.exception_handler(e.CtaprodError)
    async def _domain(_request: Request, exc: e.CtaprodError) -> JSONResponse:
        return domain(exc)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(
            exc.status_code,
            HTTP_CODES.get(exc.status_code, "error"),
            message,
            scrubber=scrubber,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(
            422,
            "invalid_request",
            f"{where}: {first.get('msg')}",
            {"errors": _validation_errors(errs)},
            scrubber=scrubber,
        )

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, exc: OverflowError) -> JSONResponse:
        # A number the models let through but a driver cannot bind: the input is wrong.
        log.warning("number out of range reached the database layer: %s", exc)
        return error_response(422, "invalid_request", "a number is out of range", scrubber=scrubber)

    @app.exception_handler(StatementError)
    async def _database(_request: Request, exc: StatementError) -> JSONResponse:
        if isinstance(exc.orig, e.CtaprodError):  # raised while binding a value (db.types)
            return domain(exc.orig)
        if isinstance(exc, DBAPIError) and is_deadlock(exc):
            # Rolled back whole by the database to break a deadlock: nothing was written and
            # the same request will do. Clients (pilots first) retry a 503.
            log.info("deadlock victim, answered 503: %s", str(exc.orig).splitlines()[0])
            return JSONResponse(
                {
                    "error": "busy",
                    "message": "the database rolled this request back to break a deadlock; "
                    "nothing was changed: retry",
                    "detail": {},
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return _internal(exc, scrubber)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _internal(exc, scrubber)
