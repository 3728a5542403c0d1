"""A stand-in for the decision API: a small real HTTP/1.1 server on 127.0.0.1.

(A helper module with its own name, not conftest: several test folders have a
conftest.py, and ``import conftest`` would depend on collection order.)

It speaks the decision API's contract (POST /v1/decide, POST /v1/decide/batch
answering {"results": [{"index", "decision" | "error"}]}, bearer token, 200 +
Decision.to_dict() for every decided outcome, 400 + {"error": {...}} for bad
input) over a real socket, in front of the real
Pipeline -- so the clients are tested against HTTP, not a mock transport.
Knobs let a test make it slow, make it answer something canned, or count
what it received.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis.core.call import parse_call
from aegis.errors import CallError, ErrorCode
from aegis.http import HttpRequest, HttpResponse, json_response
from aegis.pipeline import Pipeline, RequestContext
from aegis.policy import CompiledPolicy, load_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Error"}


@dataclass
class StandInServer:
    """The decision API's contract in front of ``pipeline``; see the module docstring."""

    pipeline: Pipeline
    token: str | None = "test-token"
    delay: float = 0.0
    canned: HttpResponse | None = None
    received: list[HttpRequest] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> StandInServer:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, self.host, 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="standin-api", daemon=True)
        self._thread.start()
        assert ready.wait(5), "stand-in server did not start"
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        assert loop is not None and server is not None and self._thread is not None

        async def shutdown() -> None:
            server.close()
            # Cut connections still open (a slow answer the client gave up on).
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        loop.close()

    # -- HTTP ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = tuple(
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            )
            length = int(dict(headers).get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            path, _, query = target.partition("?")
            request = HttpRequest(method, path, query, headers, body, "127.0.0.1")
            self.received.append(request)
            response = await self.handle(request)
            reason = _REASONS.get(response.status, "Status")
            out = [f"HTTP/1.1 {response.status} {reason}"]
            out += [f"{k}: {v}" for k, v in response.headers]
            out += [f"content-length: {len(response.body)}", "connection: close", "", ""]
            writer.write("\r\n".join(out).encode("latin-1") + response.body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.canned is not None:
            return self.canned
        if request.method != "POST":
            return _error(405, ErrorCode.REQUEST_METHOD_NOT_ALLOWED, "POST only")
        if self.token is not None:
            auth = request.header("authorization")
            if auth is None:
                return _error(401, ErrorCode.IDENTITY_MISSING, "a bearer token is required")
            if auth != f"Bearer {self.token}":
                return _error(401, ErrorCode.IDENTITY_INVALID, "the bearer token is not valid")
        try:
            data = json.loads(request.body)
        except ValueError:
            return _error(400, ErrorCode.REQUEST_INVALID_JSON, "the body is not JSON")
        ctx = RequestContext(door="api", credentials=self.token)
        if request.path == "/v1/decide":
            try:
                call = parse_call(data)
            except CallError as exc:
                return json_response(400, {"error": exc.to_dict()})
            result = await self.pipeline.decide(call, ctx)
            return json_response(200, result.decision.to_dict())
        if request.path == "/v1/decide/batch":
            raw = data.get("calls") if isinstance(data, dict) else None
            if not isinstance(raw, list):
                return _error(400, ErrorCode.REQUEST_MALFORMED, "calls must be a list", "calls")
            results: list[dict[str, Any]] = []
            for i, item in enumerate(raw):
                try:
                    call = parse_call(item)
                except CallError as exc:
                    results.append({"index": i, "error": {"type": "CallError", **exc.to_dict()}})
                    continue
                decision = (await self.pipeline.decide(call, ctx)).decision
                results.append({"index": i, "decision": decision.to_dict()})
            return json_response(200, {"results": results})
        return _error(404, ErrorCode.REQUEST_NOT_FOUND, f"no route {request.path}")


def _error(status: int, code: ErrorCode, message: str, path: str = "") -> HttpResponse:
    return json_response(status, {"error": {"code": str(code), "message": message, "path": path}})


def canned(status: int, body: Any) -> HttpResponse:
    """A fixed answer; ``body`` is JSON data, or raw bytes sent as they are."""
    if isinstance(body, bytes):
        return HttpResponse(status, (("content-type", "application/json"),), body)
    return json_response(status, body)


def free_port() -> int:
    """A port nothing listens on (bound, then released) -- for connection refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def example_policy(name: str) -> CompiledPolicy:
    return load_policy([EXAMPLES / name])


ServerFactory = Callable[..., StandInServer]
