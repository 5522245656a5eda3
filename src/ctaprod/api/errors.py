"""Domain errors -> HTTP status codes with a JSON body; never a bare 500 with a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

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


def status_of(exc: e.CtaprodError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(status: int, code: str, message: str, detail: object = None) -> JSONResponse:
    body = {"error": code, "message": message, "detail": jsonable_encoder(detail or {})}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(e.CtaprodError)
    async def _domain(_request: Request, exc: e.CtaprodError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(
            422,
            "invalid_request",
            f"{where}: {first.get('msg')}",
            {"errors": [{k: v for k, v in err.items() if k != "ctx"} for err in errs[:20]]},
        )

    @app.exception_handler(DBAPIError)
    async def _database(_request: Request, exc: DBAPIError) -> JSONResponse:
        if is_deadlock(exc):
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
        log.exception("database error")
        return error_response(
            500, "internal_error", f"internal error ({type(exc).__name__}); see the server log"
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(
            500, "internal_error", f"internal error ({type(exc).__name__}); see the server log"
        )
