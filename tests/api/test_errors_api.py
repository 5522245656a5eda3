"""Database errors through the real app: a deadlock victim is a 503 the client may retry (a
JSON body, Retry-After), any other database error a 500 with a JSON body, never a traceback."""

from __future__ import annotations

import warnings
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


class _Orig(Exception):
    def __init__(self, sqlstate: str | None = None, *args: Any) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


def test_deadlock_is_a_503_to_retry(api: Any) -> None:
    @api.get("/test/deadlock")
    def deadlock() -> None:
        raise OperationalError("UPDATE jobs ...", {}, _Orig("40P01", "deadlock detected"))

    @api.get("/test/mysql-deadlock")
    def mysql_deadlock() -> None:
        raise OperationalError("UPDATE jobs ...", {}, _Orig(None, 1213, "Deadlock found"))

    @api.get("/test/broken")
    def broken() -> None:
        raise OperationalError("SELECT ...", {}, _Orig("08006", "connection failure"))

    client = TestClient(api, raise_server_exceptions=False)
    for path in ("/test/deadlock", "/test/mysql-deadlock"):
        r = client.get(path)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"] == "busy"
        assert "retry" in r.json()["message"]
    r = client.get("/test/broken")
    assert r.status_code == 500
    assert r.json()["error"] == "internal_error"
    assert "Traceback" not in r.text
