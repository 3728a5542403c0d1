"""The MCP proxy: a low-level MCP server facing the agent, SDK clients facing
the upstreams, and the pipeline between them for every tool.

* ``tools/list`` (spec 2025-11-25, server/tools "Listing Tools"): every page of
  every upstream is read, each tool is checked against its pinned definition
  and decided as ``ToolCall(phase=list, params={})``; only tools the decision
  lets through (allow, sanitize, or a declared read failing open) are listed,
  under their namespaced names, in one page.
* ``tools/call`` (server/tools "Calling Tools"): the namespaced name resolves
  to an upstream tool; a changed definition is refused; the arguments are
  validated as ``params`` (depth, size, JSON values) and decided as
  ``ToolCall(phase=call)``. deny / approval_needed / limits become JSON-RPC
  errors (:mod:`aegis.doors.mcp.wire`); sanitize forwards the sanitized
  arguments; allow forwards the validated arguments. The upstream's result is
  returned as it came (a tool's own failure is ``isError: true`` in a result,
  server/tools "Error Handling", and passes through).

Nothing is forwarded before the decision permits it, and a request the proxy
cannot read is answered with a JSON-RPC error, never passed on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any, cast

import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette

from aegis.core.call import McpPhase, ToolCall, ToolKind, TraceContext, parse_call
from aegis.core.decision import Outcome
from aegis.doors.mcp import passthrough
from aegis.doors.mcp.config import McpConfigError, McpProxyConfig
from aegis.doors.mcp.http import HttpRunner, build_http_app
from aegis.doors.mcp.identity import Caller, identify
from aegis.doors.mcp.pinning import (
    DefinitionPins,
    DriftRecord,
    InMemoryPinStore,
    JsonFilePinStore,
    PinRecord,
    PinStatus,
    PinStore,
)
from aegis.doors.mcp.sessions import LinkSet, ProxyRuntime, ToolEntry, running
from aegis.doors.mcp.stdio import serve_stdio
from aegis.doors.mcp.telemetry import DOOR, McpTelemetry
from aegis.doors.mcp.upstream import UpstreamUnavailableError
from aegis.doors.mcp.wire import (
    IDENTITY_REFUSED,
    TOOL_DEFINITION_CHANGED,
    call_error,
    decision_error,
    request_error,
    upstream_error,
)
from aegis.errors import CallError, ErrorCode
from aegis.pipeline import Pipeline, RequestContext
from aegis.telemetry import GatewayMetrics, JsonLog

Ctx = ServerRequestContext[ProxyRuntime, Any]


class _ProxyServer(Server[ProxyRuntime]):
    """Advertises ``listChanged`` for what it relays (spec 2025-11-25,
    server/tools "Capabilities"): upstream list changes are forwarded."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(options, experimental_capabilities, extensions)


class McpProxy:
    """One proxy: build with :func:`aegis.doors.mcp.build_mcp_proxy`."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: McpProxyConfig,
        *,
        metrics: GatewayMetrics | None = None,
        log: JsonLog | None = None,
        pin_store: PinStore | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.telemetry = McpTelemetry(metrics, log)
        if pin_store is None:
            file = config.pinning.file
            pin_store = JsonFilePinStore(file) if file is not None else InMemoryPinStore()
        self.pins = DefinitionPins(pin_store, enabled=config.pinning.enabled)
        self.runtimes: set[ProxyRuntime] = set()
        self.server = self._build_server()
        self._http: HttpRunner | None = None

    # -- operator API ------------------------------------------------------------------

    async def approve_definition(self, upstream: str, tool: str, new_hash: str) -> PinRecord:
        """Re-approve ``tool`` (its upstream name, without the prefix) of
        ``upstream`` at ``new_hash``; the refusal's ``data.error.new_hash``
        and :meth:`drifts` name it."""
        self.config.upstream(upstream)  # KeyError for an unknown upstream
        record = await self.pins.approve_definition(upstream, tool, new_hash)
        self.telemetry.note(
            "mcp.tool_definition_approved", upstream=upstream, tool=tool, hash=new_hash
        )
        return record

    async def drifts(self) -> list[DriftRecord]:
        """Every definition change seen, with the old and new hash."""
        return await self.pins.drifts()

    def end_session(self, session_id: str) -> None:
        """Close the upstream links of a Streamable HTTP session (it was deleted)."""
        for runtime in list(self.runtimes):
            runtime.end(f"http:{session_id}")

    # -- run modes ---------------------------------------------------------------------

    async def serve_stdio(
        self, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
    ) -> None:
        """Serve one agent over stdio until stdin closes (spec basic/transports
        "stdio"). ``stdin``/``stdout`` default to the process's binary streams."""
        if self.config.identity is None:
            raise McpConfigError(["identity: required to serve over stdio"])
        await serve_stdio(self, stdin=stdin, stdout=stdout)

    def http_app(self) -> Starlette:
        """The Streamable HTTP ASGI app (a Starlette app with its lifespan)."""
        return build_http_app(self)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve Streamable HTTP on ``host:port`` in this event loop; returns the
        bound port (``port=0`` picks a free one)."""
        if self._http is not None:
            raise RuntimeError("already started")
        runner = self._http = HttpRunner(build_http_app(self))
        try:
            return await runner.start(host, port)
        except BaseException:
            self._http = None
            raise

    async def stop(self, grace: float = 10.0) -> None:
        """Stop serving HTTP; in-flight requests get up to ``grace`` seconds."""
        runner, self._http = self._http, None
        if runner is not None:
            await runner.stop(timeout=grace)

    # -- the server --------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _server: Server[ProxyRuntime]) -> AsyncIterator[ProxyRuntime]:
        async with running(self.config, self.telemetry) as runtime:
            self.runtimes.add(runtime)
            try:
                yield runtime
            finally:
                self.runtimes.discard(runtime)

    def _build_server(self) -> Server[ProxyRuntime]:
        server = _ProxyServer(
            self.config.server_name,
            version=self.config.server_version,
            instructions="Tools of several MCP servers behind the Aegis policy gateway.",
            lifespan=self._lifespan,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        # The OpenTelemetry middleware's per-message span duplicates the
        # pipeline's decision span on the hot path; Aegis records its own.
        server.middleware = []
        passthrough.register(self, server)
        return server

    def connection(self, ctx: Ctx) -> tuple[Caller, LinkSet]:
        """The caller of this request and its agent connection's links."""
        try:
            caller = identify(ctx.request, self.config)
        except MCPError as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            self.telemetry.refused(ErrorCode(data.get("error", {}).get("code", "identity.missing")))
            raise
        link_set = ctx.lifespan_context.link_set(caller, ctx.session)
        if link_set.owner is not None and link_set.owner != (caller.tenant, caller.agent_id):
            # A session opened by one agent is not usable by another (the
            # session id is not a credential).
            self.telemetry.refused(ErrorCode.IDENTITY_MISMATCH, session=caller.session_id[:64])
            raise request_error(
                IDENTITY_REFUSED,
                ErrorCode.IDENTITY_MISMATCH,
                "this MCP session belongs to another agent",
            )
        return caller, link_set

    def _request_context(self, caller: Caller, ctx: Ctx) -> RequestContext:
        return RequestContext(
            door=DOOR,
            credentials=caller.credentials,
            remote_addr=caller.remote_addr,
            request_id=None if ctx.request_id is None else str(ctx.request_id),
        )

    def _tool_call(
        self, caller: Caller, entry: ToolEntry, phase: McpPhase, arguments: object, ctx: Ctx
    ) -> ToolCall:
        """The ToolCall for ``entry``, through parse_call's input checks
        (CallError for arguments that cannot be decided)."""
        call = parse_call(
            {
                "tenant": caller.tenant,
                "agent_id": caller.agent_id,
                "tool": entry.public_name,
                "params": arguments,
                "kind": str(_kind(entry.tool)),
                "phase": str(phase),
                "session_id": caller.session_id or None,
                "destination": entry.link.config.destination,
            }
        )
        labels = caller.labels
        trace = _trace(ctx)
        if labels or trace is not None:
            call = ToolCall(
                tenant=call.tenant,
                agent_id=call.agent_id,
                tool=call.tool,
                params=call.params,
                kind=call.kind,
                phase=call.phase,
                agent_labels=labels,
                session_id=call.session_id,
                destination=call.destination,
                trace=trace or call.trace,
            )
        return call

    async def _verified(self, entry: ToolEntry) -> bool:
        """Whether ``entry``'s definition matches its pin (pinning it on first sight)."""
        link, tool = entry.link, entry.tool
        verdict = await self.pins.check(link.name, tool.name, entry.hash)
        if verdict.status is PinStatus.PINNED:
            self.telemetry.definition_pinned(link.name, tool.name, entry.hash)
        elif verdict.status is PinStatus.CHANGED:
            self.telemetry.definition_changed(
                link.name, tool.name, verdict.pinned_hash, entry.hash, first_time=verdict.new_drift
            )
        elif verdict.status is PinStatus.UNVERIFIABLE:
            self.telemetry.note(
                "mcp.pin_store_failed", upstream=link.name, tool=tool.name, error=verdict.error
            )
        return verdict.usable

    async def _list_tools(
        self, ctx: Ctx, _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller, link_set = self.connection(ctx)
        await link_set.refresh()
        rctx = self._request_context(caller, ctx)
        listed: list[types.Tool] = []
        for entry in list(link_set.index.values()):
            if not await self._verified(entry):
                continue
            try:
                call = self._tool_call(caller, entry, McpPhase.LIST, {}, ctx)
            except CallError:  # a name no policy can address (control characters, too long)
                self.telemetry.note(
                    "mcp.tool_unlisted", tool=entry.public_name[:300], reason="invalid name"
                )
                continue
            result = await self.pipeline.decide(call, rctx)
            if result.decision.permits:
                listed.append(entry.tool.model_copy(update={"name": entry.public_name}))
        return types.ListToolsResult(tools=listed)

    async def _call_tool(
        self, ctx: Ctx, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller, link_set = self.connection(ctx)
        entry = await link_set.resolve(params.name)
        if entry is None:
            # Unknown tools are a protocol error (spec server/tools "Error Handling").
            self.telemetry.refused(ErrorCode.REQUEST_NOT_FOUND, tool=params.name[:300])
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name[:200]}")
        if not await self._verified(entry):
            self.telemetry.refused(
                ErrorCode.REQUEST_TOOL_DEFINITION_CHANGED,
                upstream=entry.link.name,
                tool=entry.tool.name,
            )
            pin = await self._pinned_hash(entry)
            raise request_error(
                TOOL_DEFINITION_CHANGED,
                ErrorCode.REQUEST_TOOL_DEFINITION_CHANGED,
                f"the definition of {entry.public_name!r} changed since it was approved",
                upstream=entry.link.name,
                tool=entry.tool.name,
                pinned_hash=pin,
                new_hash=entry.hash,
            )
        try:
            call = self._tool_call(caller, entry, McpPhase.CALL, params.arguments or {}, ctx)
        except CallError as exc:
            self.telemetry.refused(exc.code, tool=entry.public_name)
            raise call_error(exc) from None
        result = await self.pipeline.decide(call, self._request_context(caller, ctx))
        decision = result.decision
        if not decision.permits:
            raise decision_error(decision)
        if decision.outcome is Outcome.SANITIZE and decision.sanitized_params is not None:
            arguments = dict(decision.sanitized_params)
        else:
            arguments = dict(result.call.params)
        return await self._forward(ctx, link_set, entry, arguments)

    async def _forward(
        self, ctx: Ctx, link_set: LinkSet, entry: ToolEntry, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        link = entry.link
        progress = None
        if ctx.meta is not None and ctx.meta.get("progress_token") is not None:
            progress = ctx.session.report_progress
        channel = link_set.channel
        try:
            if channel is None:
                return await link.call_tool(entry.tool.name, arguments, progress=progress)
            with channel.serving(ctx.session, ctx.request_id):
                return await link.call_tool(entry.tool.name, arguments, progress=progress)
        except MCPError as exc:
            if exc.code not in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT):
                raise upstream_error(link.name, f"tools/call failed: {exc.message}", exc) from None
            reason = "timed out" if exc.code == types.REQUEST_TIMEOUT else "connection closed"
        except UpstreamUnavailableError as exc:
            reason = str(exc)
        except Exception as exc:  # a transport failure or a result that does not validate
            reason = f"{type(exc).__name__}: {exc}"[:500]
        # The connection is not trusted again: the next request reconnects.
        link.discard(reason)
        self.telemetry.upstream_failed(link.name, reason)
        raise upstream_error(link.name, reason)

    async def _pinned_hash(self, entry: ToolEntry) -> str | None:
        try:
            pin = await self.pins.store.get(entry.link.name, entry.tool.name)
        except Exception:  # the store is down; the refusal stands without the old hash
            return None
        return pin.hash if pin is not None else None


def _kind(tool: types.Tool) -> ToolKind:
    """A tool's kind from its annotations (spec server/tools "Tool Annotations":
    ``readOnlyHint`` defaults to false). A policy declaration wins over it, and
    only a declared read may ever fail open (CompiledPolicy.fail_mode_for)."""
    annotations = tool.annotations
    if annotations is not None and annotations.read_only_hint is True:
        return ToolKind.READ
    return ToolKind.WRITE


def _trace(ctx: Ctx) -> TraceContext | None:
    """W3C Trace Context carried in ``params._meta`` (the OpenTelemetry MCP
    semantic conventions' propagation), when well-formed."""
    meta = ctx.meta
    if meta is None:
        return None
    parent = cast(Any, meta).get("traceparent")
    if not isinstance(parent, str) or len(parent) != 55:
        return None
    state = cast(Any, meta).get("tracestate")
    return TraceContext(parent, state if isinstance(state, str) and len(state) <= 512 else "")


__all__ = ["McpProxy"]
