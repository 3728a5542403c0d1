"""The proxy served over Streamable HTTP (spec 2025-11-25, basic/transports
"Streamable HTTP"), on the SDK's session manager.

* One endpoint (``http.path``, default ``/mcp``) takes POST (JSON-RPC in, JSON
  or SSE out), GET (the standalone SSE stream) and DELETE (end the session).
* Sessions are stateful by default (``Mcp-Session-Id``); each session gets
  its own upstream links, which DELETE and the idle timeout close.
* Host and Origin are checked against loopback plus ``http.allowed_hosts`` /
  ``allowed_origins`` (the spec's "Security Warning": servers MUST validate
  Origin to prevent DNS rebinding); bodies are capped at ``http.max_body_bytes``
  (413 before parsing).
* Identity comes from each request's headers (:mod:`.identity`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aegis.doors.mcp.identity import SESSION_HEADER

if TYPE_CHECKING:
    from aegis.doors.mcp.proxy import McpProxy

LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


class _Endpoint:
    """The MCP endpoint: the SDK's app, then session cleanup after a DELETE."""

    def __init__(self, proxy: McpProxy, app: StreamableHTTPASGIApp) -> None:
        self.proxy = proxy
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope.get("method") == "DELETE":
            session_id = Headers(scope=scope).get(SESSION_HEADER)
            if session_id:
                self.proxy.end_session(session_id)


def build_http_app(proxy: McpProxy) -> Starlette:
    cfg = proxy.config.http
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, *cfg.allowed_hosts],
        allowed_origins=[*LOOPBACK_ORIGINS, *cfg.allowed_origins],
    )
    manager = StreamableHTTPSessionManager(
        app=proxy.server,
        json_response=cfg.json_response,
        stateless=cfg.stateless,
        security_settings=security,
        retry_interval=cfg.retry_interval_ms,
        session_idle_timeout=cfg.session_idle_timeout,
        max_request_body_size=cfg.max_body_bytes,
        max_sessions=cfg.max_sessions,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():  # enters the proxy's lifespan (its runtime) once
            yield

    endpoint = _Endpoint(proxy, StreamableHTTPASGIApp(manager))
    return Starlette(routes=[Route(cfg.path, endpoint=endpoint)], lifespan=lifespan)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding process owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpRunner:
    """Runs an ASGI app on uvicorn inside the current asyncio loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, timeout: float = 10.0) -> int:
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        server = self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("the HTTP server stopped while starting")
            if loop.time() > deadline:
                await self.stop()
                raise TimeoutError(f"the HTTP server did not start within {timeout}s")
            await asyncio.sleep(0.01)
        return int(server.servers[0].sockets[0].getsockname()[1])

    async def stop(self, *, timeout: float = 10.0) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["HttpRunner", "build_http_app"]
