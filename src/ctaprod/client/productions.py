"""Client methods of the production routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ctaprod.client.base import ClientBase
from ctaprod.core.prod_views import (
    ProdLogEntry,
    ProductionDryRun,
    ProductionStatusView,
    ProductionView,
    ValidationOutcome,
)

PAGE = 1000


def _ref(ref: int | str) -> str:
    return quote(str(ref), safe="")


def _submission(
    definition: Mapping[str, Any], name: str | None, mc_tasks: int | None
) -> dict[str, Any]:
    return {"definition": dict(definition), "name": name, "mc_tasks": mc_tasks}


class ProductionsAPI(ClientBase):
    """Production calls; a production is named by its ID or its name."""

    def submit_production(
        self, definition: Mapping[str, Any], *, name: str | None = None, mc_tasks: int | None = None
    ) -> ProductionView:
        body = _submission(definition, name, mc_tasks)
        return self._post("/api/productions", ProductionView, body)

    def dry_run_production(
        self, definition: Mapping[str, Any], *, name: str | None = None, mc_tasks: int | None = None
    ) -> ProductionDryRun:
        body = _submission(definition, name, mc_tasks)
        return self._post("/api/productions/dry-run", ProductionDryRun, body)

    def productions(
        self,
        *,
        status: Sequence[str] = (),
        owner: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[ProductionView]:
        params: dict[str, Any] = {"status": list(status), "after": after, "limit": limit}
        if owner is not None:
            params["owner"] = owner
        return self._list("GET", "/api/productions", ProductionView, params=params)

    def production(self, ref: int | str) -> ProductionView:
        return self._get(f"/api/productions/{_ref(ref)}", ProductionView)

    def production_status(self, ref: int | str) -> ProductionStatusView:
        return self._get(f"/api/productions/{_ref(ref)}/status", ProductionStatusView)

    def production_log(self, ref: int | str, limit: int = PAGE) -> list[ProdLogEntry]:
        return self._list(
            "GET", f"/api/productions/{_ref(ref)}/log", ProdLogEntry, params={"limit": limit}
        )

    def drive_production(self, ref: int | str, action: str) -> ProductionView:
        """``action``: start, stop, flush or clean."""
        return self._post(f"/api/productions/{_ref(ref)}/{action}", ProductionView)

    def extend_production(self, ref: int | str, tasks: int) -> ProductionView:
        return self._post(f"/api/productions/{_ref(ref)}/extend", ProductionView, {"tasks": tasks})

    def validate_production(
        self, ref: int | str, *, checksum: str = "sample", sample: int = 100
    ) -> ValidationOutcome:
        body = {"checksum": checksum, "sample": sample}
        return self._post(f"/api/productions/{_ref(ref)}/validate", ValidationOutcome, body)
