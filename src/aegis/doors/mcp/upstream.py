"""One MCP client session to one upstream server, and the agent it relays to.

An :class:`UpstreamLink` owns an SDK ``Client`` inside a task of its own (an
anyio task group must be left by the task that entered it, and a link outlives
the request that opened it). It speaks the initialize handshake (spec
2025-11-25, basic/lifecycle) to the upstream, lists tools page by page
(server/tools "Listing Tools", bounded), calls tools, and relays what the
upstream sends back during a call to the agent through an
:class:`AgentChannel`:

* server-to-client requests -- ``sampling/createMessage``, ``elicitation/create``,
  ``roots/list`` (client/sampling, client/elicitation, client/roots) -- are asked
  of the agent on the stream of the agent request being served (Streamable HTTP
  "Sending Messages to the Server" item 6: related messages ride that request's
  SSE stream);
* ``notifications/message`` and progress are forwarded the same way;
* list-changed and resource-updated notifications go to the agent's standalone
  channel, after the link's listener (the proxy's catalog refresh) has run.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.session import ServerSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata

from aegis.doors.mcp.config import (
    HttpUpstream,
    InProcessUpstream,
    Relay,
    StdioUpstream,
    UpstreamConfig,
)

#: Seconds a relayed notification may wait for the agent's stream.
NOTIFY_TIMEOUT = 5.0


class UpstreamUnavailableError(Exception):
    """The upstream could not be reached, or its connection is gone."""


@dataclass
class AgentChannel:
    """The agent connection a set of links serves.

    ``active`` holds the agent requests being forwarded right now (the agent
    session that carries them and the request id); a relay goes to the most
    recent one. JSON-RPC over stdio cannot say which call an upstream's
    ``sampling/createMessage`` belongs to, so with several calls in flight on
    one agent connection the newest is the best available answer.
    """

    relay: Relay = field(default_factory=Relay)
    active: list[tuple[ServerSession, types.RequestId | None]] = field(default_factory=list)
    last_session: ServerSession | None = None

    @contextmanager
    def serving(self, session: ServerSession, request_id: types.RequestId | None) -> Iterator[None]:
        entry = (session, request_id)
        self.active.append(entry)
        self.last_session = session
        try:
            yield
        finally:
            self.active.remove(entry)

    def _target(self) -> tuple[ServerSession, types.RequestId | None] | None:
        if self.active:
            return self.active[-1]
        if self.last_session is not None:
            return self.last_session, None
        return None

    def wants(self, capability: str) -> bool:
        """Relay ``capability`` when configured and the agent declared it."""
        if not getattr(self.relay, capability):
            return False
        session = self.last_session
        caps = session.client_capabilities if session is not None else None
        return caps is not None and getattr(caps, capability, None) is not None

    async def _ask(self, request: types.ServerRequest, result_type: type[Any]) -> Any:
        target = self._target()
        if target is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST, message="no agent connection to relay to"
            )
        session, request_id = target
        try:
            return await session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=request_id)
            )
        except MCPError as exc:
            return exc.error

    async def sample(
        self, _ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        result_type = (
            types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        )
        result: types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData
        result = await self._ask(types.CreateMessageRequest(params=params), result_type)
        return result

    async def elicit(
        self, _ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        result: types.ElicitResult | types.ErrorData
        result = await self._ask(types.ElicitRequest(params=params), types.ElicitResult)
        return result

    async def list_roots(
        self, _ctx: ClientRequestContext
    ) -> types.ListRootsResult | types.ErrorData:
        result: types.ListRootsResult | types.ErrorData
        result = await self._ask(types.ListRootsRequest(), types.ListRootsResult)
        return result

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        target = self._target()
        if target is None:
            return
        session, request_id = target
        try:
            # The notification itself, not ServerSession.send_log_message (the
            # logging capability is deprecated in 2026-07-28; the upstream chose
            # to log, the proxy only carries it on the request's stream).
            await session.send_notification(
                types.LoggingMessageNotification(params=params), related_request_id=request_id
            )
        except Exception:  # the agent may be gone; a log line is not worth failing a call
            return

    async def notify(self, notification: types.ServerNotification) -> None:
        session = self.last_session
        if session is None:
            return
        # Bounded: an agent that stopped reading must not stall the upstream session.
        with anyio.move_on_after(NOTIFY_TIMEOUT):
            try:
                await session.send_notification(notification)
            except Exception:  # no standalone stream open, or the agent left
                return


ToolsChanged = Callable[["UpstreamLink"], Awaitable[None]]


class UpstreamLink:
    """A live client session to one upstream, with its last tool listing."""

    def __init__(
        self,
        config: UpstreamConfig,
        channel: AgentChannel | None,
        *,
        max_pages: int,
        on_tools_changed: ToolsChanged | None = None,
        client_info: types.Implementation | None = None,
    ) -> None:
        self.config = config
        self.channel = channel
        self.max_pages = max_pages
        self.on_tools_changed = on_tools_changed
        self.client_info = client_info
        self._client: Client | None = None
        self._closed = anyio.Event()
        self._done = anyio.Event()
        self.failure: str | None = None
        #: The last complete tools/list of this upstream, by upstream tool name,
        #: each with its definition hash (computed once per listing).
        self.tools: dict[str, tuple[types.Tool, str]] = {}
        self.listed = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def alive(self) -> bool:
        return self._client is not None and not self._closed.is_set()

    @property
    def client(self) -> Client:
        if self._client is None or self._closed.is_set():
            raise UpstreamUnavailableError(self.failure or "not connected")
        return self._client

    @property
    def capabilities(self) -> types.ServerCapabilities:
        return self.client.server_capabilities

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Connect (handshake included); raises UpstreamUnavailableError on failure."""
        try:
            with anyio.fail_after(self.config.timeout_seconds):
                await tg.start(self._own)
        except Exception as exc:  # spawn errors, refused connections, a failed handshake
            self.failure = _describe(exc)
            raise UpstreamUnavailableError(self.failure) from exc

    def discard(self, reason: str) -> None:
        """Give up on this connection (it failed); the next use opens a new one."""
        self.failure = reason
        self._closed.set()

    async def close(self) -> None:
        self._closed.set()
        with anyio.move_on_after(5):
            await self._done.wait()

    async def _own(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False
        try:
            async with self._client_cm() as client:
                self._client = client
                started = True
                task_status.started()
                await self._closed.wait()
        except Exception as exc:  # after start: the upstream went away; the next use reconnects
            if not started:
                raise
            self.failure = _describe(exc)
        finally:
            self._client = None
            self._done.set()

    def _client_cm(self) -> AbstractAsyncContextManager[Client]:
        channel = self.channel
        kwargs: dict[str, Any] = {
            "mode": "legacy",  # the initialize handshake every server era accepts
            "cache": None,  # listings must be fresh: pinning compares them
            "read_timeout_seconds": self.config.timeout_seconds,
            "message_handler": self._on_message,
            "client_info": self.client_info,
        }
        if channel is not None:
            if channel.wants("sampling"):
                kwargs["sampling_callback"] = channel.sample
            if channel.wants("elicitation"):
                kwargs["elicitation_callback"] = channel.elicit
            if channel.wants("roots"):
                kwargs["list_roots_callback"] = channel.list_roots
            kwargs["logging_callback"] = channel.log
        transport = self.config.transport
        if isinstance(transport, InProcessUpstream):
            return Client(transport.server, **kwargs)
        if isinstance(transport, StdioUpstream):
            params = StdioServerParameters(
                command=transport.command,
                args=list(transport.args),
                env=dict(transport.env) if transport.env is not None else None,
                cwd=transport.cwd,
            )
            return Client(stdio_client(params, errlog=sys.stderr), **kwargs)
        assert isinstance(transport, HttpUpstream)
        return Client(_http_transport(transport, self.config.timeout_seconds), **kwargs)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            return
        root = message
        if (
            isinstance(root, types.ToolListChangedNotification)
            and self.on_tools_changed is not None
        ):
            await self.on_tools_changed(self)
        if self.channel is not None and isinstance(
            root,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification
            | types.ResourceUpdatedNotification,
        ):
            await self.channel.notify(root)

    # -- requests ------------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        """Every page of tools/list, at most ``max_pages`` of them."""
        client = self.client
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(self.max_pages):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        meta: types.RequestParamsMeta | None = None,
        progress: ProgressFnT | None = None,
    ) -> types.CallToolResult:
        return await self.client.call_tool(name, arguments, progress_callback=progress, meta=meta)


@asynccontextmanager
async def _http_transport(
    upstream: HttpUpstream, timeout: float
) -> AsyncIterator[Any]:  # yields the SDK's TransportStreams
    # The SDK's defaults: 30 s to connect/write, a long read for SSE streams.
    http = httpx2.AsyncClient(
        headers=dict(upstream.headers), timeout=httpx2.Timeout(30.0, read=max(timeout, 300.0))
    )
    async with http, streamable_http_client(upstream.url, http_client=http) as streams:
        yield streams


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    if isinstance(exc, TimeoutError):
        return "timed out connecting"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


__all__ = ["AgentChannel", "UpstreamLink", "UpstreamUnavailableError"]
