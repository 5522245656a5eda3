"""Schemathesis against the OpenAPI of a real server, with a user token and an admin token.

The bar: no server error (5xx) and every answer as the schema declares it (status code,
content type, body). Bounded to fit in CI (a few examples per operation); SQLite only, the
other engines run the same routes in their own tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.limits_server import running_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CTAPROD_TEST_DB", "sqlite") != "sqlite",
        reason="fuzzed on SQLite only (CI time)",
    ),
]
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def _schemathesis(url: str, token: str, log: Path, seed: int) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "run",
            f"{url}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "3",  # with the coverage phase's own cases: about 40 s a token (CI time)
            "--workers",
            "2",
            "--seed",
            str(seed),
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "20",
            "--max-failures",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=log.parent,  # schemathesis keeps a cache in its working directory
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )


@pytest.mark.timeout(600)
def test_no_server_error_and_every_answer_declared(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        for who, token in (("user", server.user_token), ("admin", server.admin_token)):
            log = tmp_path / f"schemathesis-{who}.txt"
            result = _schemathesis(server.url, token, log, seed=20261202)
            log.write_text(result.stdout + result.stderr)
            assert result.returncode == 0, f"schemathesis ({who} token):\n{result.stdout[-8000:]}"
        server_log = (tmp_path / "server.log").read_text(errors="replace")
        assert "internal error" not in server_log, server_log[-4000:]
