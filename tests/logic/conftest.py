"""Helpers for the logic tests: identities, submissions and pilots on the real test database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ctaprod.core.identity import Identity
from ctaprod.core.jobdesc import expand
from ctaprod.core.matching import Resource
from ctaprod.core.properties import TokenKind
from ctaprod.logic import auth, runtime
from ctaprod.logic import jobs as job_logic
from tests.identities import ensure_member

USER_PROPS = frozenset({"NormalUser"})


def user_identity(
    name: str, group: str = "ctao_user", properties: frozenset[str] = USER_PROPS
) -> Identity:
    return Identity(user=name, group=group, kind=TokenKind.USER, properties=properties)


@dataclass
class Pilot:
    pilot_id: int
    ident: Identity  # the pilot session identity (bound to pilot_id)
    site: str

    def resource(self, **fields: Any) -> Resource:
        return Resource(site=self.site, **fields)


class Kit:
    """Small verbs over the services of one test."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.ctx = services.ctx
        self.tokens = services.tokens
        self.matcher = services.matcher
        auth.bootstrap(self.ctx)
        self._pilot_token = services.tokens.issue("pilot", "ctao_pilot", TokenKind.PILOT, _days(1))
        self.pilot_ident = services.tokens.verify(self._pilot_token.token)
        self._stamps = 0

    def group(
        self, name: str, share: float = 1.0, properties: Sequence[str] = ("NormalUser",)
    ) -> str:
        auth.add_group(self.ctx, name, list(properties), share)
        return name

    def user(
        self, name: str, group: str = "ctao_user", properties: frozenset[str] = USER_PROPS
    ) -> Identity:
        return user_identity(name, group, properties)

    def ensure_member(self, ident: Identity) -> None:
        ensure_member(self.ctx, ident, self.tokens)

    def submit(self, ident: Identity, count: int = 1, **fields: Any) -> list[int]:
        self.ensure_member(ident)
        doc: dict[str, Any] = {"Executable": "/bin/true", **fields}
        descs = [d for _ in range(count) for d in expand(doc, self.ctx.limits)]
        ids = job_logic.submit_jobs(self.ctx, ident, descs).job_ids
        self.matcher.invalidate()
        return ids

    def pilot(self, site: str = "LCG.Test.org") -> Pilot:
        self._stamps += 1
        reg = runtime.register_pilot(
            self.ctx,
            self.tokens,
            self.pilot_ident,
            f"stamp-{self._stamps}-{site}",
            site,
            "ce.test",
            "q",
        )
        return Pilot(reg.pilot_id, self.tokens.verify(reg.session_token), site)

    def match(self, pilot: Pilot, **resource: Any) -> Any:
        return self.matcher.match(pilot.ident, pilot.pilot_id, pilot.resource(**resource))

    def job_ident(self, match: Any) -> Identity:
        return self.tokens.verify(match.job_token)

    def state(self, job_id: int) -> Any:
        with self.ctx.db.read() as conn:
            return self.ctx.jobs.states(conn, [job_id])[job_id]

    def row(self, job_id: int) -> Any:
        with self.ctx.db.read() as conn:
            return self.ctx.jobs.get(conn, job_id)

    def count_jobs(self) -> int:
        from sqlalchemy import func, select

        from ctaprod.db.tables import jobs

        with self.ctx.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())

    def drain(self, pilot: Pilot, **resource: Any) -> list[int]:
        """Match until nothing is left for this pilot; the matched job IDs in order."""
        out = []
        while (m := self.match(pilot, **resource)) is not None:
            out.append(m.job_id)
        return out


def _days(n: float) -> Any:
    from datetime import timedelta

    return timedelta(days=n)


@pytest.fixture
def kit(services: Any) -> Kit:
    return Kit(services)


@pytest.fixture
def alice() -> Identity:
    return user_identity("alice")


@pytest.fixture
def bob() -> Identity:
    return user_identity("bob")
