"""ASGI plumbing of the HTTP API: body-size limit, request metrics, a fast JSON response, and the fast path that
answers POST /recommend without FastAPI's routing and dependency injection.

Why the fast path: on a SASRec run, FastAPI's per-request machinery (routing, dependency solving, body parsing,
validation through the request model) cost about 0.18 ms of CPU per /recommend, more than scoring 12,101 items
for a micro-batch share; the same validation through `RecommendRequest.model_validate_json` costs 0.02 ms. The
FastAPI route stays: it documents the endpoint in the OpenAPI schema and answers bodies that are not JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse

from semrec.serving.engine import Engine
from semrec.serving.metrics import Metrics

ROUTES_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


def validation_detail(errors: list[dict], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A 422 body's `detail`: location, message and type of the first 20 errors. The input is not echoed back:
    that could itself fail (1e400 is inf, not JSON)."""
    return [{"loc": [*prefix, *(str(p) for p in e.get("loc", ()))], "msg": str(e.get("msg", ""))[:300],
             "type": str(e.get("type", ""))} for e in errors[:20]]


class FastJSON(JSONResponse):
    """JSON rendered by pydantic-core (about 4x faster than the json module for a top-20 answer); the hot path's
    bodies hold only finite numbers, strings and lists."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)




class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes with 413 (by Content-Length, or while streaming)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ROUTES_WITH_BODY:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        chunks, total, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            total += len(body)
            if total > self.limit:
                return await self._refuse(send)
            chunks.append(body)
            more = msg.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_again() -> dict:
            return replay.pop() if replay else await receive()

        return await self.app(scope, receive_again, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class Observe:
    """ASGI middleware: pick up other workers' catalogue changes, then time and count the request by route."""

    def __init__(self, app: Any, engine: Engine, metrics: Metrics):
        self.app, self.engine, self.metrics = app, engine, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]
        self.engine.sync()

        async def send_status(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "other"), status[0],
                                 time.perf_counter() - t0)


def _is_json(scope: dict) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class FastPath:
    """ASGI middleware: `POST path` with a JSON body goes to `handler(body) -> (status, payload)`; everything else
    (other paths, other content types) to the app. `route` is set in the scope so metrics label it as FastAPI
    would. Sits inside `BodyLimit`, so the body is already bounded."""

    def __init__(self, app: Any, path: str, handler: Callable[[bytes], Awaitable[tuple[int, Any]]], route: Any):
        self.app, self.path, self.handler, self.route = app, path, handler, route

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path or not _is_json(scope):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        scope["route"] = self.route
        status, payload = await self.handler(b"".join(chunks))
        body = pydantic_core.to_json(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
