"""Limits on what one request may send, enforced before any route (or thread) sees it.

An ASGI middleware, so that a slow or huge body costs the server a coroutine, never a worker
thread or gigabytes of memory:

- every body has a size limit per route (``Content-Length`` checked up front, chunked bodies
  counted as they arrive): 413;
- a body must keep arriving: silent for ``body_idle_seconds``, or slower on average than
  ``body_min_rate`` after that grace, it is refused with 408;
- JSON routes get their body only once it is complete and sane: no integer beyond 64 bits, no
  NaN or Infinity, no NUL or lone surrogate in any string, nesting at most ``max_json_depth``:
  422 naming the problem (never echoing the text);
- a NUL byte in the path or query string: 422.

Two routes stream their bodies (sandbox and data uploads): they get a receive channel that
counts and times the body; when it is refused, the route's own answer is replaced by this one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ctaprod.core.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


@dataclass(frozen=True)
class RouteLimit:
    max_bytes: int | None  # None: no size limit (data uploads go to storage as they come)
    streamed: bool = False  # the route reads the body itself, chunk by chunk


class Refused(Exception):
    """A request this module answers itself (status, error code, message)."""

    def __init__(self, status: int, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


def route_limits(settings: Settings) -> list[tuple[str, re.Pattern[str], RouteLimit]]:
    """The routes whose body limit is not the JSON default, first match wins."""
    api = settings.api
    big = RouteLimit(api.submit_max_bytes)
    return [
        (
            "PUT",
            re.compile(r"/api/sandboxes/[^/]*"),
            RouteLimit(settings.sandboxes.max_bytes, True),
        ),
        ("PUT", re.compile(r"/api/data/files"), RouteLimit(None, True)),
        ("POST", re.compile(r"/api/jobs"), big),
        ("PUT", re.compile(r"/api/pilots/[^/]*/log"), big),
        ("POST", re.compile(r"/api/pilots/[^/]*/finished"), big),
    ]


class _JsonRefused(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _JsonRefused(f"{name} is not a number this API accepts")


def _int(text: str) -> int:
    if len(text) > 20:
        raise _JsonRefused("an integer is out of range (at most 64 bits)")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _JsonRefused("an integer is out of range (at most 64 bits)")
    return value


def _float(text: str) -> float:
    if len(text) > 64:
        raise _JsonRefused("a number has too many digits")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _JsonRefused("a number is out of range (overflows to infinity)")
    return value


def _bad_string(text: str) -> str | None:
    if "\x00" in text:
        return "a string contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a string contains a lone surrogate (not valid Unicode)"
    return None


def check_json(body: bytes, max_depth: int) -> None:
    """Raise :class:`Refused` (422) when ``body`` is JSON that no route may accept; let
    invalid JSON through (the route's own parser answers it with its usual 422)."""
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_int=_int, parse_float=_float)
    except _JsonRefused as exc:
        raise Refused(422, "invalid_request", f"body: {exc}") from None
    except RecursionError:
        raise Refused(
            422,
            "invalid_request",
            f"body: JSON nested deeper than {max_depth}",
            max_depth=max_depth,
        ) from None
    except ValueError:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = _bad_string(item)
            if problem:
                raise Refused(422, "invalid_request", f"body: {problem}")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise Refused(
                422,
                "invalid_request",
                f"body: JSON nested deeper than {max_depth}",
                max_depth=max_depth,
            )
        if isinstance(item, dict):
            for key, sub in item.items():
                stack.append((key, depth))
                stack.append((sub, depth + 1))
        else:
            stack.extend((sub, depth + 1) for sub in item)


class _Body:
    """Receives a request body under the size and time limits."""

    def __init__(self, receive: Receive, limit: RouteLimit, settings: Settings) -> None:
        self._receive = receive
        self.limit = limit
        self.idle = settings.api.body_idle_seconds
        self.rate = settings.api.body_min_rate
        # The clock starts when the route first asks for the body (an upload may wait for a
        # slot first), and counts from there: silence, then the average rate.
        self.start: float | None = None
        self.received = 0
        self.done = False
        self.refused: Refused | None = None

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        if self.refused is not None:
            raise self.refused
        if self.start is None:
            self.start = time.monotonic()
        allowed = self.start + self.idle + self.received / self.rate - time.monotonic()
        try:
            message = await asyncio.wait_for(
                self._receive(), timeout=max(0.0, min(self.idle, allowed))
            )
        except TimeoutError:
            self.refused = Refused(
                408,
                "timeout",
                f"request body too slow: {self.received} bytes in "
                f"{time.monotonic() - self.start:.0f} s",
                received=self.received,
            )
            raise self.refused from None
        if message["type"] != "http.request":
            self.done = True
            return message
        self.received += len(message.get("body", b""))
        if self.limit.max_bytes is not None and self.received > self.limit.max_bytes:
            self.refused = too_large(self.limit.max_bytes)
            raise self.refused
        if not message.get("more_body", False):
            self.done = True
        return message

    async def read_all(self) -> bytes:
        chunks: list[bytes] = []
        while not self.done:
            message = await self.receive()
            if message["type"] != "http.request":
                raise Refused(400, "invalid_request", "client went away during the request body")
            chunks.append(message.get("body", b""))
        return b"".join(chunks)


def too_large(limit: int) -> Refused:
    return Refused(
        413, "too_large", f"request body over the limit of {limit} bytes", max_bytes=limit
    )


async def send_refusal(send: Send, refused: Refused) -> None:
    body = json.dumps(
        {"error": refused.code, "message": refused.message, "detail": refused.detail}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refused.status in (408, 413):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """The ASGI middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.routes = route_limits(settings)
        self.default = RouteLimit(settings.api.json_max_bytes)

    def limit_of(self, method: str, path: str) -> RouteLimit:
        for verb, pattern, limit in self.routes:
            if verb == method and pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except Refused as refused:
            await send_refusal(send, refused)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        if b"%00" in raw_path.lower() or b"%00" in scope.get("query_string", b"").lower():
            raise Refused(422, "invalid_request", "a NUL character in the URL")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared is None and not chunked:  # no body at all
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["method"], scope["path"])
        if declared is not None:
            if not declared.isdigit() or len(declared) > 18:
                raise Refused(400, "invalid_request", "invalid Content-Length")
            if limit.max_bytes is not None and int(declared) > limit.max_bytes:
                raise too_large(limit.max_bytes)
        body = _Body(receive, limit, self.settings)
        if not limit.streamed:
            data = await body.read_all()
            if data and _is_json(headers.get(b"content-type")):
                check_json(data, self.settings.api.max_json_depth)
            await self.app(scope, _replay(data, receive), send)
            return
        await self._streamed(scope, body, send)

    async def _streamed(self, scope: Scope, body: _Body, send: Send) -> None:
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if body.refused is not None and not started:
                return  # the refusal replaces whatever the route answers
            started = True
            await send(message)

        try:
            await self.app(scope, body.receive, guarded_send)
        except Exception:
            if body.refused is None or started:
                raise
        if body.refused is not None and not started:
            await send_refusal(send, body.refused)


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return True  # FastAPI reads a body without a content type as JSON
    main = content_type.split(b";")[0].strip().lower()
    return main == b"application/json" or main.endswith(b"+json")


def _replay(data: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()

    return replay


class UploadSlots:
    """Bounds how many uploads stream to storage at once: each holds a worker thread while its
    body arrives, so slow uploads may take a few threads but never the whole pool."""

    def __init__(self, slots: int) -> None:
        self._semaphore = asyncio.Semaphore(slots)

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()
