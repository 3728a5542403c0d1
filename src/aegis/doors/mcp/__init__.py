"""The MCP door: a policy-enforcing proxy between one MCP client (the agent)
and one or more upstream MCP servers.

    proxy = build_mcp_proxy(pipeline, config, metrics=metrics, log=log)
    await proxy.serve_stdio()            # the agent's host launched us
    port = await proxy.start("127.0.0.1", 0)   # or serve Streamable HTTP
    ...
    await proxy.stop()

``tools/list`` is filtered by list-phase policy, ``tools/call`` is decided by
the pipeline, tool definitions are pinned (a changed definition is refused
until :meth:`McpProxy.approve_definition`). docs/doors/mcp.md is the manual.
"""

from __future__ import annotations

from aegis.doors.mcp.config import (
    AgentIdentity,
    HttpConfig,
    HttpUpstream,
    InProcessUpstream,
    McpConfigError,
    McpProxyConfig,
    Passthrough,
    PinningConfig,
    Relay,
    StdioUpstream,
    UpstreamConfig,
)
from aegis.doors.mcp.loader import load_config
from aegis.doors.mcp.pinning import (
    DefinitionPins,
    DriftRecord,
    InMemoryPinStore,
    JsonFilePinStore,
    PinRecord,
    PinStore,
    definition_hash,
)
from aegis.doors.mcp.proxy import McpProxy
from aegis.doors.mcp.wire import (
    APPROVAL_NEEDED,
    IDENTITY_REFUSED,
    LIMITED,
    POLICY_DENIED,
    TOOL_DEFINITION_CHANGED,
    UPSTREAM_FAILED,
)
from aegis.pipeline import Pipeline
from aegis.telemetry import GatewayMetrics, JsonLog


def build_mcp_proxy(
    pipeline: Pipeline,
    config: McpProxyConfig,
    *,
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
    pin_store: PinStore | None = None,
) -> McpProxy:
    """The MCP proxy for ``config``, deciding with ``pipeline``.

    ``metrics`` and ``log`` receive what the door records itself (refusals,
    definition changes, upstream failures); decisions are recorded by the
    pipeline's evidence sink. ``pin_store`` overrides ``config.pinning``.
    Nothing starts until a run mode is entered.
    """
    return McpProxy(pipeline, config, metrics=metrics, log=log, pin_store=pin_store)


__all__ = [
    "APPROVAL_NEEDED",
    "IDENTITY_REFUSED",
    "LIMITED",
    "POLICY_DENIED",
    "TOOL_DEFINITION_CHANGED",
    "UPSTREAM_FAILED",
    "AgentIdentity",
    "DefinitionPins",
    "DriftRecord",
    "HttpConfig",
    "HttpUpstream",
    "InMemoryPinStore",
    "InProcessUpstream",
    "JsonFilePinStore",
    "McpConfigError",
    "McpProxy",
    "McpProxyConfig",
    "Passthrough",
    "PinRecord",
    "PinStore",
    "PinningConfig",
    "Relay",
    "StdioUpstream",
    "UpstreamConfig",
    "build_mcp_proxy",
    "definition_hash",
    "load_config",
]
