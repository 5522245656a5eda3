"""Client methods of the transformation routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ctaprod.client.base import ClientBase
from ctaprod.core.trans_views import (
    AttachResult,
    DryRun,
    TaskView,
    TransFileView,
    TransformationView,
    TransLogEntry,
)

PAGE = 1000


def _ref(ref: int | str) -> str:
    return quote(str(ref), safe="")


class TransformationsAPI(ClientBase):
    """Transformation calls; a transformation is named by its ID or its name."""

    def create_transformation(
        self, definition: Mapping[str, Any], *, start: bool = False
    ) -> TransformationView:
        return self._post(
            "/api/transformations", TransformationView, dict(definition), params={"start": start}
        )

    def dry_run_transformation(self, definition: Mapping[str, Any]) -> DryRun:
        return self._post(
            "/api/transformations", DryRun, dict(definition), params={"dry_run": True}
        )

    def transformations(
        self,
        *,
        status: Sequence[str] = (),
        type: Sequence[str] = (),
        owner: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[TransformationView]:
        params: dict[str, Any] = {
            "status": list(status),
            "type": list(type),
            "after": after,
            "limit": limit,
        }
        if owner is not None:
            params["owner"] = owner
        return self._list("GET", "/api/transformations", TransformationView, params=params)

    def transformation(self, ref: int | str) -> TransformationView:
        return self._get(f"/api/transformations/{_ref(ref)}", TransformationView)

    def transformation_files(
        self, ref: int | str, *, status: Sequence[str] = (), after: int = 0, limit: int = PAGE
    ) -> list[TransFileView]:
        params = {"status": list(status), "after": after, "limit": limit}
        return self._list(
            "GET", f"/api/transformations/{_ref(ref)}/files", TransFileView, params=params
        )

    def iter_transformation_files(
        self, ref: int | str, *, status: Sequence[str] = ()
    ) -> Iterator[TransFileView]:
        after = 0
        while True:
            page = self.transformation_files(ref, status=status, after=after)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].id

    def transformation_tasks(
        self,
        ref: int | str,
        *,
        status: Sequence[str] = (),
        after: int = 0,
        limit: int = PAGE,
        inputs: bool = False,
    ) -> list[TaskView]:
        params = {"status": list(status), "after": after, "limit": limit, "inputs": inputs}
        return self._list("GET", f"/api/transformations/{_ref(ref)}/tasks", TaskView, params=params)

    def transformation_log(self, ref: int | str, limit: int = PAGE) -> list[TransLogEntry]:
        return self._list(
            "GET", f"/api/transformations/{_ref(ref)}/log", TransLogEntry, params={"limit": limit}
        )

    def drive_transformation(self, ref: int | str, action: str) -> TransformationView:
        """``action``: start, stop, flush, input-complete or clean."""
        return self._post(f"/api/transformations/{_ref(ref)}/{action}", TransformationView)

    def extend_transformation(
        self, ref: int | str, *, query: str | None = None, max_tasks: int | None = None
    ) -> TransformationView:
        body = {"query": query, "max_tasks": max_tasks}
        return self._post(f"/api/transformations/{_ref(ref)}/extend", TransformationView, body)

    def rescan_transformation(self, ref: int | str) -> AttachResult:
        return self._post(f"/api/transformations/{_ref(ref)}/rescan", AttachResult)
