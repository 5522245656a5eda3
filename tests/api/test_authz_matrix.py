"""The authorization matrix: every route of the app x every kind of caller -> the status.

The route list comes from the app itself: a route without an entry in ``ROUTES`` fails
``test_every_route_has_an_entry``, so that no route is added without deciding who may call
it. Path parameters and bodies point at real objects of user B (bob): his jobs, sandbox,
request, dataset, catalog directory and files; the transformation and the production
belong to the administrator. Callers:

- ``none``, ``expired``, ``forged`` (signed with another key), ``revoked``: always 401;
- ``user_a``: alice (NormalUser, same group as bob) on bob's objects;
- ``pilot``: the session token of a registered pilot (on pilot routes: another pilot's id);
- ``pilot_cred``: the pilot credential a pilot registers with; answers as ``pilot`` except
  that it may register;
- ``job_other``: the job token of one of alice's jobs, used on bob's objects;
- ``operator``: olga (NormalUser, Operator); ``admin``: the bootstrapped admin;
- ``ex_admin``: a token of max in ctao_admin, issued before max left ctao_admin;
- ``job_final``: the job token of one of bob's jobs that has ended (Done).

Expected: an int is the exact status; ``OK`` means "authorized": neither 401, 403 nor 404
(nor 5xx) - the call may still be a 409 or a 422 for the state of the object. Cells whose
answer the issue's rules change but that wait for another branch are in ``PENDING_*`` and
marked xfail (not strict): flip them when that work is merged.

Everything is built once for the module (one database), so the ~1,000 calls take seconds;
routes that destroy their object get a fresh one per call (``fresh_*`` helpers).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import tarfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from ctaprod.core.properties import TokenKind
from tests.api.conftest import Api, Headers, bearer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

OK = "OK"
DENIED = "DENIED"  # 401, 403 or 404
COLUMNS = (
    "none",
    "expired",
    "forged",
    "revoked",
    "user_a",
    "pilot",
    "pilot_cred",
    "job_other",
    "operator",
    "admin",
    "ex_admin",
    "job_final",
)
BAD_TOKENS = COLUMNS[:4]
# Credentials that the issue says are dead (rights read at each use; job tokens only for a
# current, non-final attempt): the whole column is expected DENIED.
DEAD_COLUMNS = {"ex_admin", "job_final"}
CREDENTIAL_ROUTES = {"POST /api/pilots/register", "GET /api/auth/whoami"}
SE = "LOCAL-DISK"
OTHER_SE = "LOCAL-FAILOVER"
SITE = "LCG.Test.org"
B_HOME = "/ctao/user/b/bob"
B_DIR = f"{B_HOME}/data"
FIELD = "particle"


# -- the expected answers, by rule ------------------------------------------------------------
def rule(user_a: Any, pilot: Any, job_other: Any, operator: Any, admin: Any) -> dict[str, Any]:
    return {
        "user_a": user_a,
        "pilot": pilot,
        "job_other": job_other,
        "operator": operator,
        "admin": admin,
    }


PUBLIC: dict[str, Any] = {c: 200 for c in COLUMNS}  # the health probe
ANY_TOKEN = rule(OK, OK, OK, OK, OK)
ADMIN_ONLY = rule(403, 403, 403, 403, OK)
OPERATOR_ONLY = rule(403, 403, 403, OK, OK)
PROD_MGMT = rule(403, 403, 403, 403, OK)  # olga has no ProductionManagement
USERS_READ = rule(OK, 403, 403, OK, OK)  # user tokens only
READ = rule(OK, 403, OK, OK, OK)  # user and job tokens (the catalog is world-readable)
USER_CREATES = rule(OK, 403, 403, OK, OK)  # a user's own new object
# Bob's job, sandbox, request: hidden from other users (404, DIRAC: not yours), a job token
# of another job refused, JobAdministrator (admin) allowed.
OWNER = rule(404, 403, 403, 404, OK)
REQUEST = rule(404, 404, 404, OK, OK)
# Writing into bob's catalog directory: his own, his group's or ProductionManagement.
CATALOG_WRITE = rule(403, 403, 403, 403, OK)
# Pilot routes on another pilot's id: that pilot's session token only.
OTHER_PILOT = rule(403, 403, 403, 403, 403)
# Job runtime routes (status, heartbeat) on bob's job: its own job token only.
JOB_RUNTIME = rule(403, 403, 403, 403, 403)


# -- the world ---------------------------------------------------------------------------------
@dataclass
class World:
    rest: Api
    headers: dict[str, Headers]
    b: Headers
    b_job: int  # waiting
    b_matched_job: int  # running at pilot b_pilot
    b_sha: str
    b_request: int
    b_dataset: str
    b_file: str
    b_pilot: int
    trans: int
    prod: int
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def c(self) -> TestClient:
        return self.rest.client

    def n(self) -> int:
        return next(self.counter)

    def fresh_job(self) -> int:
        return self.rest.submit_one(self.b)

    def fresh_file(self) -> str:
        lfn = f"{B_DIR}/f{self.n()}.dat"
        r = self.c.put("/api/data/files", headers=self.b, params={"lfn": lfn}, content=b"x" * 10)
        assert r.status_code == 201, r.text
        return lfn

    def fresh_dataset(self) -> str:
        name = f"bobset{self.n()}"
        body = {"name": name, "query": f"{FIELD}=gamma"}
        r = self.c.post("/api/metadata/datasets", headers=self.b, json=body)
        assert r.status_code == 201, r.text
        return name

    def fresh_field(self) -> str:
        name = f"field{self.n()}"
        body = {"name": name, "type": "string"}
        r = self.c.post("/api/metadata/fields", headers=self.rest.admin, json=body)
        assert r.status_code == 201, r.text
        return name

    def fresh_user(self) -> str:
        name = f"user{self.n()}"
        r = self.c.post(
            "/api/admin/users", headers=self.rest.admin, json={"name": name, "groups": []}
        )
        assert r.status_code == 201, r.text
        return name

    def fresh_member(self) -> dict[str, str]:
        body = {"user": self.fresh_user(), "group": "ctao_user"}
        r = self.c.post("/api/admin/members", headers=self.rest.admin, json=body)
        assert r.status_code == 201, r.text
        return body

    def fresh_jti(self) -> str:
        issued = self.rest.services.tokens.issue(
            "bob", "ctao_user", TokenKind.USER, timedelta(days=1)
        )
        return str(issued.jti)


def _sandbox(data: bytes = b"bob's input") -> bytes:
    """A tar.gz of one file, the same bytes for the same ``data`` (no time stamp)."""
    out = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        info = tarfile.TarInfo("input.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="module")
def world(_migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from ctaprod.api.app import create_app
    from ctaprod.core.settings import Settings
    from ctaprod.db.engine import Database
    from ctaprod.db.tables import metadata
    from ctaprod.server.services import build_services, ensure_identities

    db = Database(_migrated)
    with db.write() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    db.dispose()
    tmp: Path = tmp_path_factory.mktemp("authz")
    settings = Settings(
        state_dir=tmp / "state",
        database_url=_migrated,
        secret_key="test-secret-" + "x" * 40,
        extensions=[],
    )
    services = build_services(settings, migrate_db=False)
    admin_token, pilot_token = ensure_identities(services)
    with TestClient(create_app(services)) as client:
        rest = Api(client, admin_token, pilot_token, services)
        yield _build(rest)
    services.ctx.db.dispose()


def _build(rest: Api) -> World:
    c = rest.client
    alice = rest.user("alice", "ctao_user")
    bob = rest.user("bob", "ctao_user")
    olga = rest.user("olga", "ctao_ops", ("NormalUser", "Operator"))
    r = c.post("/api/metadata/fields", headers=rest.admin, json={"name": FIELD, "type": "string"})
    assert r.status_code == 201, r.text
    # Bob's sandbox, files, dataset, request and jobs.
    data = _sandbox()
    sha = hashlib.sha256(data).hexdigest()
    r = c.put(f"/api/sandboxes/{sha}", headers=bob, content=data)
    assert r.status_code == 201, r.text
    b_file = f"{B_DIR}/main.dat"
    r = c.put(
        "/api/data/files",
        headers=bob,
        params={"lfn": b_file, "metadata": f'{{"{FIELD}": "gamma"}}'},
        content=b"y" * 20,
    )
    assert r.status_code == 201, r.text
    body = {"name": "bobset", "query": f"{FIELD}=gamma"}
    assert c.post("/api/metadata/datasets", headers=bob, json=body).status_code == 201
    spec = {"name": "b", "operations": [{"type": "RemoveFile", "files": [{"lfn": b_file}]}]}
    r = c.post("/api/requests", headers=bob, json=spec)
    assert r.status_code == 201, r.text
    b_request = int(r.json()["request_id"])
    # Bob's job matched by pilot B, then alice's job matched by pilot A (the "pilot" and
    # "job_other" callers), then bob's waiting job (no pilot matches after it).
    b_matched, _b_job_token, b_pilot, b_session = rest.matched_job(bob, InputSandbox=[f"SB:{sha}"])
    r = c.put(f"/api/pilots/{b_pilot}/log", headers=b_session, json={"log": "pilot B"})
    assert r.status_code == 204, r.text
    _a_job, a_job_token, _a_pilot, a_pilot = rest.matched_job(alice)
    final_job, final_token, _, _ = rest.matched_job(bob)
    for status in ("Running", "Done"):
        assert rest.report(final_token, final_job, status=status).status_code == 200
    b_job = rest.submit_one(bob)
    # The transformation and the production (ProductionManagement: admin).
    trans = {
        "name": "authz_proc",
        "type": "Processing",
        "input_query": f"{FIELD}=gamma",
        "group_size": 2,
        "job_template": {"Executable": "process.sh", "Arguments": "{{input_lfns}}"},
        "output_lfn_template": "/ctao/MC/authz/{{transformation_id}}/{{task_id}}.h5",
    }
    r = c.post("/api/transformations", headers=rest.admin, json=trans)
    assert r.status_code == 201, r.text
    trans_id = int(r.json()["trans_id"])
    r = c.post("/api/productions", headers=rest.admin, json={"definition": _production()})
    assert r.status_code == 201, r.text
    prod_id = int(r.json()["prod_id"])
    # The bad tokens.
    ex_admin = rest.user("max", "ctao_admin")
    r = c.post("/api/admin/members", headers=rest.admin, json={"user": "max", "group": "ctao_user"})
    assert r.status_code == 201, r.text
    body = {"user": "max", "group": "ctao_admin"}
    r = c.post("/api/admin/members/remove", headers=rest.admin, json=body)
    assert r.status_code == 204, r.text
    tokens = rest.services.tokens
    expired = tokens.issue("alice", "ctao_user", TokenKind.USER, timedelta(seconds=-60))
    revoked = tokens.issue("alice", "ctao_user", TokenKind.USER, timedelta(days=1))
    tokens.revoke(revoked.jti)
    claims = jwt.decode(
        a_job_token["Authorization"].split()[1], options={"verify_signature": False}
    )
    forged = jwt.encode({**claims, "sub": "admin", "grp": "ctao_admin"}, "k" * 40, "HS256")
    headers = {
        "none": {},
        "expired": bearer(expired.token),
        "forged": bearer(forged),
        "revoked": bearer(revoked.token),
        "user_a": alice,
        "pilot": a_pilot,
        "pilot_cred": bearer(rest.pilot_token),
        "job_other": a_job_token,
        "operator": olga,
        "admin": rest.admin,
        "ex_admin": ex_admin,
        "job_final": final_token,
    }
    return World(
        rest=rest,
        headers=headers,
        b=bob,
        b_job=b_job,
        b_matched_job=b_matched,
        b_sha=sha,
        b_request=b_request,
        b_dataset="bobset",
        b_file=b_file,
        b_pilot=b_pilot,
        trans=trans_id,
        prod=prod_id,
    )


def _production() -> dict[str, Any]:
    base = "/ctao/MC/authzprod"
    mc = {
        "type": "MCSimulation",
        "max_tasks": 2,
        "job_template": {"Executable": "sim.sh", "Arguments": "{{run_number}}"},
        "output_lfn_template": f"{base}/sim/{{{{run_number}}}}.simtel",
    }
    return {"name": "authz_prod", "base_path": base, "steps": [{"id": "1", "transformation": mc}]}


# -- the table: route -> (rule, request builder) ---------------------------------------------
Call = dict[str, Any]  # path, and optionally params, json, content
Build = Callable[[World], Call]


def _json(url: str, body: Any = None, /, **params: Any) -> Build:
    return lambda w: {"path": url.format(w=w), "json": body, "params": params or None}


def _call(path: Callable[[World], str], body: Callable[[World], Any] | None = None) -> Build:
    return lambda w: {"path": path(w), "json": None if body is None else body(w)}


def _upload(n: int) -> Call:
    data = _sandbox(f"upload {n}".encode())
    return {"path": f"/api/sandboxes/{hashlib.sha256(data).hexdigest()}", "content": data}


def _heartbeat(w: World) -> Any:
    return {"job_id": w.b_matched_job}


ROUTES: dict[str, tuple[dict[str, Any], Build]] = {
    "GET /api/health": (PUBLIC, _json("/api/health")),
    "GET /api/auth/whoami": (ANY_TOKEN, _json("/api/auth/whoami")),
    # -- pilots (runtime) --
    "POST /api/pilots/register": (
        rule(403, 403, 403, 403, 403),
        _json("/api/pilots/register", {"stamp": "authz", "site": SITE}),
    ),
    "POST /api/pilots/{pilot_id}/match": (
        OTHER_PILOT,
        _json("/api/pilots/{w.b_pilot}/match", {"site": SITE}),
    ),
    "POST /api/pilots/{pilot_id}/finished": (
        OTHER_PILOT,
        _json("/api/pilots/{w.b_pilot}/finished", {"ok": True}),
    ),
    "PUT /api/pilots/{pilot_id}/log": (
        OTHER_PILOT,
        _json("/api/pilots/{w.b_pilot}/log", {"log": "forged"}),
    ),
    # Pilots are monitored by operators and job administrators.
    "GET /api/pilots": (OPERATOR_ONLY, _json("/api/pilots")),
    "GET /api/pilots/{pilot_id}": (OPERATOR_ONLY, _json("/api/pilots/{w.b_pilot}")),
    "GET /api/pilots/{pilot_id}/log": (OPERATOR_ONLY, _json("/api/pilots/{w.b_pilot}/log")),
    "POST /api/jobs/heartbeats": (
        rule(200, 200, 200, 200, 200),  # per-item refusals in the body (checked below)
        _call(lambda w: "/api/jobs/heartbeats", lambda w: [_heartbeat(w)]),
    ),
    "POST /api/jobs/{job_id}/heartbeat": (
        JOB_RUNTIME,
        _call(lambda w: f"/api/jobs/{w.b_matched_job}/heartbeat", _heartbeat),
    ),
    "POST /api/jobs/status": (
        rule(200, 200, 200, 200, 200),  # per-item refusals in the body
        _call(lambda w: "/api/jobs/status", lambda w: [{"job_id": w.b_matched_job}]),
    ),
    "POST /api/jobs/{job_id}/status": (
        JOB_RUNTIME,
        _call(lambda w: f"/api/jobs/{w.b_matched_job}/status", _heartbeat),
    ),
    # -- jobs --
    "POST /api/jobs": (
        USER_CREATES,
        _json("/api/jobs", {"documents": [{"Executable": "/bin/true"}]}),
    ),
    # Listing bob's jobs: his own, or JobAdministrator (others: 404, as for one job).
    "GET /api/jobs": (OWNER, _json("/api/jobs", owner="bob")),
    "POST /api/jobs/search": (OWNER, _json("/api/jobs/search", {"owner": "bob"})),
    "POST /api/jobs/count": (OWNER, _json("/api/jobs/count", {"owner": "bob"})),
    "POST /api/jobs/summary": (OWNER, _json("/api/jobs/summary", {"owner": "bob"})),
    "POST /api/jobs/kill": (
        OWNER,
        _call(lambda w: "/api/jobs/kill", lambda w: {"job_ids": [w.fresh_job()]}),
    ),
    "POST /api/jobs/reschedule": (
        OWNER,
        _call(lambda w: "/api/jobs/reschedule", lambda w: {"job_ids": [w.b_job]}),
    ),
    "POST /api/jobs/delete": (
        OWNER,
        _call(lambda w: "/api/jobs/delete", lambda w: {"job_ids": [w.fresh_job()]}),
    ),
    "GET /api/jobs/{job_id}": (OWNER, _json("/api/jobs/{w.b_job}")),
    "GET /api/jobs/{job_id}/history": (OWNER, _json("/api/jobs/{w.b_job}/history")),
    "DELETE /api/jobs/{job_id}": (OWNER, _call(lambda w: f"/api/jobs/{w.fresh_job()}")),
    "GET /api/jobs/{job_id}/output": (
        rule(404, 403, 403, 404, 404),  # bob's job has no output yet: 404 for the admin
        _json("/api/jobs/{w.b_job}/output"),
    ),
    # -- sandboxes --
    # "Have I uploaded this?": only bob's upload counts for bob, so 404 for everyone else.
    "HEAD /api/sandboxes/{sha256}": (
        rule(404, 404, 404, 404, 404),
        _json("/api/sandboxes/{w.b_sha}"),
    ),
    # A new upload (jobs upload output sandboxes; the same bytes as bob's would make them
    # the caller's too: content-addressed, knowing the bytes is having them).
    "PUT /api/sandboxes/{sha256}": (rule(OK, 403, OK, OK, OK), lambda w: _upload(w.n())),
    "GET /api/sandboxes/{sha256}": (
        rule(404, 404, 404, 404, OK),
        _json("/api/sandboxes/{w.b_sha}"),
    ),
    # -- admin --
    "GET /api/admin/users": (ADMIN_ONLY, _json("/api/admin/users")),
    "POST /api/admin/users": (
        ADMIN_ONLY,
        _call(lambda w: "/api/admin/users", lambda w: {"name": f"new{w.n()}", "groups": []}),
    ),
    "POST /api/admin/users/{name}/enable": (
        ADMIN_ONLY,
        _call(lambda w: f"/api/admin/users/{w.fresh_user()}/enable"),
    ),
    "POST /api/admin/users/{name}/disable": (
        ADMIN_ONLY,
        _call(lambda w: f"/api/admin/users/{w.fresh_user()}/disable"),
    ),
    "DELETE /api/admin/users/{name}": (
        ADMIN_ONLY,
        _call(lambda w: f"/api/admin/users/{w.fresh_user()}"),
    ),
    "GET /api/admin/groups": (ADMIN_ONLY, _json("/api/admin/groups")),
    "POST /api/admin/groups": (
        ADMIN_ONLY,
        _call(lambda w: "/api/admin/groups", lambda w: {"name": f"g{w.n()}", "properties": []}),
    ),
    "PATCH /api/admin/groups/{name}": (
        ADMIN_ONLY,
        _json("/api/admin/groups/ctao_user", {"description": "CTAO users"}),
    ),
    "POST /api/admin/members": (
        ADMIN_ONLY,
        _call(
            lambda w: "/api/admin/members",
            lambda w: {"user": w.fresh_user(), "group": "ctao_user"},
        ),
    ),
    "POST /api/admin/members/remove": (
        ADMIN_ONLY,
        _call(lambda w: "/api/admin/members/remove", lambda w: w.fresh_member()),
    ),
    "GET /api/admin/tokens": (ADMIN_ONLY, _json("/api/admin/tokens")),
    "POST /api/admin/tokens": (
        ADMIN_ONLY,
        _json("/api/admin/tokens", {"user": "bob", "group": "ctao_user"}),
    ),
    "DELETE /api/admin/tokens/{jti}": (
        ADMIN_ONLY,
        _call(lambda w: f"/api/admin/tokens/{w.fresh_jti()}"),
    ),
    "GET /api/sites": (USERS_READ, _json("/api/sites")),
    "PUT /api/sites/{name}": (
        OPERATOR_ONLY,
        _json(f"/api/sites/{SITE}", {"status": "Active"}),
    ),
    # -- catalog --
    "POST /api/catalog/files": (
        CATALOG_WRITE,
        _call(
            lambda w: "/api/catalog/files?verify=false",
            lambda w: [{"lfn": f"{B_DIR}/reg{w.n()}", "size": 1, "checksum": "1", "se": SE}],
        ),
    ),
    "POST /api/catalog/files/lookup": (
        READ,
        _call(lambda w: "/api/catalog/files/lookup", lambda w: {"lfns": [w.b_file]}),
    ),
    "POST /api/catalog/files/remove": (
        CATALOG_WRITE,
        _call(lambda w: "/api/catalog/files/remove", lambda w: {"lfns": [w.fresh_file()]}),
    ),
    "GET /api/catalog/stat": (READ, _json("/api/catalog/stat", path=B_DIR)),
    "POST /api/catalog/dirs": (
        CATALOG_WRITE,
        _call(lambda w: "/api/catalog/dirs", lambda w: {"path": f"{B_DIR}/d{w.n()}"}),
    ),
    "GET /api/catalog/dir": (READ, _json("/api/catalog/dir", path=B_DIR)),
    "GET /api/catalog/dir/page": (READ, _json("/api/catalog/dir/page", path=B_DIR)),
    "POST /api/catalog/replicas": (
        CATALOG_WRITE,
        _call(
            lambda w: "/api/catalog/replicas?verify=false",
            lambda w: [{"lfn": w.fresh_file(), "se": OTHER_SE}],
        ),
    ),
    "POST /api/catalog/replicas/remove": (
        CATALOG_WRITE,
        _call(
            lambda w: "/api/catalog/replicas/remove",
            lambda w: [{"lfn": w.fresh_file(), "se": SE}],
        ),
    ),
    "GET /api/catalog/ancestors": (
        READ,
        _call(lambda w: f"/api/catalog/ancestors?lfn={w.b_file}"),
    ),
    "GET /api/catalog/descendants": (
        READ,
        _call(lambda w: f"/api/catalog/descendants?lfn={w.b_file}"),
    ),
    # -- metadata and datasets --
    "GET /api/metadata/fields": (READ, _json("/api/metadata/fields")),
    "POST /api/metadata/fields": (
        PROD_MGMT,
        _call(lambda w: "/api/metadata/fields", lambda w: {"name": f"nf{w.n()}", "type": "int"}),
    ),
    "DELETE /api/metadata/fields/{name}": (
        PROD_MGMT,
        _call(lambda w: f"/api/metadata/fields/{w.fresh_field()}"),
    ),
    "GET /api/metadata/values": (READ, _json("/api/metadata/values", path=B_DIR)),
    "POST /api/metadata/values": (
        CATALOG_WRITE,
        _json("/api/metadata/values", {"path": B_DIR, "values": {FIELD: "proton"}}),
    ),
    "POST /api/metadata/values/unset": (
        CATALOG_WRITE,
        _json("/api/metadata/values/unset", {"path": B_DIR, "fields": [FIELD]}),
    ),
    "POST /api/metadata/find": (READ, _json("/api/metadata/find", {"query": f"{FIELD}=gamma"})),
    "POST /api/metadata/find/page": (
        READ,
        _json("/api/metadata/find/page", {"query": f"{FIELD}=gamma"}),
    ),
    "POST /api/metadata/count": (READ, _json("/api/metadata/count", {"query": f"{FIELD}=gamma"})),
    "POST /api/metadata/datasets": (
        USER_CREATES,
        _call(
            lambda w: "/api/metadata/datasets",
            lambda w: {"name": f"set{w.n()}", "query": f"{FIELD}=gamma"},
        ),
    ),
    "GET /api/metadata/datasets": (READ, _json("/api/metadata/datasets")),
    "GET /api/metadata/datasets/{name}": (READ, _json("/api/metadata/datasets/{w.b_dataset}")),
    "GET /api/metadata/datasets/{name}/files": (
        READ,
        _json("/api/metadata/datasets/{w.b_dataset}/files"),
    ),
    "POST /api/metadata/datasets/{name}/freeze": (
        rule(403, 403, 403, 403, OK),
        _call(lambda w: f"/api/metadata/datasets/{w.fresh_dataset()}/freeze"),
    ),
    "DELETE /api/metadata/datasets/{name}": (
        rule(403, 403, 403, 403, OK),
        _call(lambda w: f"/api/metadata/datasets/{w.fresh_dataset()}"),
    ),
    # -- storage and data --
    "GET /api/storage/elements": (READ, _json("/api/storage/elements")),
    "GET /api/storage/elements/{se}": (READ, _json(f"/api/storage/elements/{SE}")),
    "POST /api/storage/elements/{se}/ban": (
        OPERATOR_ONLY,
        _json(f"/api/storage/elements/{OTHER_SE}/ban", {"access": "read", "reason": "test"}),
    ),
    "POST /api/storage/elements/{se}/allow": (
        OPERATOR_ONLY,
        _json(f"/api/storage/elements/{OTHER_SE}/allow", {"access": "read", "reason": ""}),
    ),
    "PUT /api/data/files": (
        CATALOG_WRITE,
        lambda w: {
            "path": "/api/data/files",
            "params": {"lfn": f"{B_DIR}/up{w.n()}.dat"},
            "content": b"z" * 5,
        },
    ),
    "GET /api/data/files": (READ, _call(lambda w: f"/api/data/files?lfn={w.b_file}")),
    "POST /api/data/replicate": (
        CATALOG_WRITE,
        _call(
            lambda w: "/api/data/replicate",
            lambda w: {"lfn": w.fresh_file(), "target_se": OTHER_SE},
        ),
    ),
    "DELETE /api/data/files": (
        CATALOG_WRITE,
        _call(lambda w: f"/api/data/files?lfn={w.fresh_file()}"),
    ),
    "DELETE /api/data/replicas": (
        CATALOG_WRITE,
        _call(lambda w: f"/api/data/replicas?lfn={w.fresh_file()}&se={SE}"),
    ),
    "POST /api/data/check": (OPERATOR_ONLY, _json("/api/data/check", {"path": B_DIR, "se": SE})),
    # -- requests --
    "POST /api/requests": (
        rule(OK, 403, OK, OK, OK),
        _json("/api/requests", {"name": "n", "operations": []}),
    ),
    # Requests: the owner (a job token: its own job's), Operator and Admin repair them.
    "GET /api/requests": (rule(403, 403, OK, OK, OK), _json("/api/requests", owner="bob")),
    "GET /api/requests/{request_id}": (REQUEST, _json("/api/requests/{w.b_request}")),
    "POST /api/requests/{request_id}/retry": (
        REQUEST,
        _json("/api/requests/{w.b_request}/retry"),
    ),
    "POST /api/requests/{request_id}/cancel": (
        REQUEST,
        _json("/api/requests/{w.b_request}/cancel"),
    ),
    # -- transformations --
    "POST /api/transformations": (
        PROD_MGMT,
        _json("/api/transformations", {"name": "x"}, dry_run=True),
    ),
    "GET /api/transformations": (USERS_READ, _json("/api/transformations")),
    "GET /api/transformations/{ref}": (USERS_READ, _json("/api/transformations/{w.trans}")),
    "GET /api/transformations/{ref}/files": (
        USERS_READ,
        _json("/api/transformations/{w.trans}/files"),
    ),
    "GET /api/transformations/{ref}/tasks": (
        USERS_READ,
        _json("/api/transformations/{w.trans}/tasks"),
    ),
    "GET /api/transformations/{ref}/log": (USERS_READ, _json("/api/transformations/{w.trans}/log")),
    "POST /api/transformations/{ref}/start": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/start"),
    ),
    "POST /api/transformations/{ref}/stop": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/stop"),
    ),
    "POST /api/transformations/{ref}/flush": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/flush"),
    ),
    "POST /api/transformations/{ref}/input-complete": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/input-complete"),
    ),
    "POST /api/transformations/{ref}/clean": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/clean"),
    ),
    "POST /api/transformations/{ref}/extend": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/extend", {"query": f"{FIELD}=proton"}),
    ),
    "POST /api/transformations/{ref}/rescan": (
        PROD_MGMT,
        _json("/api/transformations/{w.trans}/rescan"),
    ),
    # -- productions --
    "POST /api/productions": (PROD_MGMT, _json("/api/productions", {"definition": {}})),
    "POST /api/productions/dry-run": (
        PROD_MGMT,
        _json("/api/productions/dry-run", {"definition": {}}),
    ),
    "GET /api/productions": (USERS_READ, _json("/api/productions")),
    "GET /api/productions/{ref}": (USERS_READ, _json("/api/productions/{w.prod}")),
    "GET /api/productions/{ref}/status": (USERS_READ, _json("/api/productions/{w.prod}/status")),
    "GET /api/productions/{ref}/log": (USERS_READ, _json("/api/productions/{w.prod}/log")),
    "POST /api/productions/{ref}/start": (PROD_MGMT, _json("/api/productions/{w.prod}/start")),
    "POST /api/productions/{ref}/stop": (PROD_MGMT, _json("/api/productions/{w.prod}/stop")),
    "POST /api/productions/{ref}/flush": (PROD_MGMT, _json("/api/productions/{w.prod}/flush")),
    "POST /api/productions/{ref}/extend": (
        PROD_MGMT,
        _json("/api/productions/{w.prod}/extend", {"tasks": 1}),
    ),
    "POST /api/productions/{ref}/clean": (PROD_MGMT, _json("/api/productions/{w.prod}/clean")),
    "POST /api/productions/{ref}/validate": (
        PROD_MGMT,
        _json("/api/productions/{w.prod}/validate", {"checksum": "none"}),
    ),
}

# Cells the issue's rules change but whose fix is on another branch (pilotcred: tokens that
# follow current membership, per-pilot credentials, job tokens only for their own job's
# current attempt). xfail, not strict: the lead flips them after merging.
PENDING_PILOTCRED: set[tuple[str, str]] = set()
PENDING_OTHERS: set[tuple[str, str]] = set()


def _app_routes(world: World) -> set[str]:
    """Every (method, path) of the app, from its OpenAPI document (a route hidden from the
    schema would escape: the app has none, and the fuzzer needs them all in it too)."""
    app: Any = world.rest.client.app
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in methods
    }


def test_every_route_has_an_entry(world: World) -> None:
    """A route added without deciding who may call it fails here; so does a stale entry."""
    routes = _app_routes(world)
    assert sorted(routes - ROUTES.keys()) == [], "routes without an authorization entry"
    assert sorted(ROUTES.keys() - routes) == [], "entries for routes that do not exist"
    pending = {route for route, _ in PENDING_PILOTCRED | PENDING_OTHERS}
    assert sorted(pending - routes) == [], "pending cells of routes that do not exist"


def _cells() -> Iterator[Any]:
    for route, (expected, _) in ROUTES.items():
        for column in COLUMNS:
            if column in BAD_TOKENS and expected is not PUBLIC:
                want = 401
            elif column in DEAD_COLUMNS and expected is not PUBLIC:
                want = DENIED
            elif column == "pilot_cred" and expected is not PUBLIC:
                # A registration credential registers its pilot (and says who it is), no more.
                want = OK if route in CREDENTIAL_ROUTES else DENIED
            else:
                want = expected[column]
            marks = []
            if (route, column) in PENDING_PILOTCRED:
                marks.append(pytest.mark.xfail(reason="pending: branch pilotcred", strict=False))
            if (route, column) in PENDING_OTHERS:
                marks.append(pytest.mark.xfail(reason="pending: see security.md", strict=False))
            yield pytest.param(route, column, want, marks=marks, id=f"{route}|{column}")


@pytest.mark.parametrize(("route", "column", "want"), list(_cells()))
def test_matrix(world: World, route: str, column: str, want: Any) -> None:
    method, _ = route.split(" ", 1)
    call = ROUTES[route][1](world)
    r = world.c.request(
        method,
        call["path"],
        headers=world.headers[column],
        params=call.get("params"),
        json=call.get("json"),
        content=call.get("content"),
    )
    shown = f"{route} as {column}: {r.status_code} {r.text[:300]}"
    if want == DENIED:
        assert r.status_code in (401, 403, 404), shown
    elif want == OK:
        assert r.status_code not in (401, 403, 404), shown
        assert r.status_code < 500, shown
    else:
        assert r.status_code == want, shown
    if r.status_code == 200 and route in ("POST /api/jobs/heartbeats", "POST /api/jobs/status"):
        # Bulk runtime calls answer 200 with one result per item: each refused (403) for
        # anyone but the job's own token.
        assert [item.get("status") for item in r.json()] == [403], shown
