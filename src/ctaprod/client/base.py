"""The plumbing every client area shares: one connection pool, one token, error mapping."""

from __future__ import annotations

import functools
import ssl
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from ctaprod.client.config import ClientConfig
from ctaprod.client.errors import ApiError, ServerUnreachable

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ClientBase:
    """One connection pool to one server with one token. Use as a context manager."""

    """One connection pool to one server with one token. Use as a context manager."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=_ssl_context(),
        )

    @classmethod
    def from_config(cls, config: ClientConfig | None = None, **kwargs: Any) -> Self:
        cfg = config or ClientConfig.load()
        return cls(cfg.url, cfg.token, **kwargs)

    def with_token(self, token: str) -> Self:
        return type(self)(self.url, token, timeout=self.http.timeout.read or 60.0)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            raise api_error(resp)
        return resp

    def _get(self, path: str, model: type[M], **kw: Any) -> M:
        return model.model_validate_json(self.request("GET", path, **kw).content)

    def _post(self, path: str, model: type[M], body: Any = None, **kw: Any) -> M:
        return model.model_validate_json(self.request("POST", path, json=body, **kw).content)

    def _list(self, method: str, path: str, item: type[T], **kw: Any) -> list[T]:
        return TypeAdapter(list[item]).validate_json(  # type: ignore[valid-type]
            self.request(method, path, **kw).content
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one costs ~17 ms of CPU, and a pilot makes a
    client per job."""
    return httpx.create_ssl_context()


def api_error(resp: httpx.Response) -> ApiError:
    try:
        body = resp.json()
        return ApiError(
            resp.status_code,
            body.get("error", "error"),
            body.get("message", resp.text),
            body.get("detail"),
        )
    except ValueError:
        return ApiError(resp.status_code, "error", resp.text[:500] or resp.reason_phrase)
