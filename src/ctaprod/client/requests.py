"""Client methods of the requests routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ctaprod.client.base import ClientBase
from ctaprod.core.requests import (
    RequestId,
    RequestInfo,
    RequestPage,
    RequestSpec,
    RequestStatus,
    RequestSummary,
)


class RequestsAPI(ClientBase):
    """Requests calls."""

    def create_request(self, spec: RequestSpec) -> int:
        body = spec.model_dump(mode="json", exclude_none=True)
        return self._post("/api/requests", RequestId, body).request_id

    def requests(
        self,
        *,
        status: Sequence[RequestStatus | str] = (),
        owner: str | None = None,
        job_id: int | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> RequestPage:
        """One page of requests, newest first."""
        params: dict[str, Any] = {"limit": limit, "status": [str(s) for s in status]}
        for key, value in (("owner", owner), ("job_id", job_id), ("cursor", cursor)):
            if value is not None:
                params[key] = value
        return self._get("/api/requests", RequestPage, params=params)

    def iter_requests(self, page: int = 500, **filters: Any) -> Iterator[RequestSummary]:
        """Every request matching ``filters`` (those of :meth:`requests`), page by page."""
        cursor = None
        while True:
            got = self.requests(limit=page, cursor=cursor, **filters)
            yield from got.requests
            cursor = got.next_cursor
            if cursor is None:
                return

    def request_info(self, request_id: int) -> RequestInfo:
        return self._get(f"/api/requests/{request_id}", RequestInfo)

    def retry_request(self, request_id: int) -> RequestInfo:
        return self._post(f"/api/requests/{request_id}/retry", RequestInfo)

    def cancel_request(self, request_id: int) -> RequestInfo:
        return self._post(f"/api/requests/{request_id}/cancel", RequestInfo)
