"""What the MCP door itself records, beside the pipeline's per-decision evidence.

Decisions (allow, deny, fail-open, ...) are recorded by the pipeline's evidence
sink with ``door="mcp"``. This module records what happens at the door before
or after a decision: requests refused before a call existed
(``aegis_requests_refused_total{door="mcp",code}``), tool-definition changes
(``aegis_mcp_tool_definition_changes_total{upstream}`` and one
``mcp.tool_definition_changed`` log line per new change) and upstream failures
(``aegis_mcp_upstream_errors_total{upstream}``).
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter

from aegis.errors import ErrorCode
from aegis.telemetry import GatewayMetrics, JsonLog

DOOR = "mcp"


class _McpCounters:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.definition_changes = Counter(
            "aegis_mcp_tool_definition_changes",
            "Tool definitions that differ from their pin (each change counted once).",
            ["upstream"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "aegis_mcp_upstream_errors",
            "Failures reaching or using an upstream MCP server.",
            ["upstream"],
            registry=registry,
        )


# One set of MCP collectors per registry: a second proxy on the same registry
# (tests, a restart in-process) reuses them instead of registering duplicates.
_COUNTERS: WeakKeyDictionary[CollectorRegistry, _McpCounters] = WeakKeyDictionary()


class McpTelemetry:
    """Counters and log lines of the MCP door; both sinks are optional."""

    def __init__(self, metrics: GatewayMetrics | None, log: JsonLog | None) -> None:
        self.metrics = metrics
        self.log = log
        self._counters: _McpCounters | None = None
        if metrics is not None:
            counters = _COUNTERS.get(metrics.registry)
            if counters is None:
                counters = _COUNTERS[metrics.registry] = _McpCounters(metrics.registry)
            self._counters = counters

    def refused(self, code: ErrorCode, **fields: object) -> None:
        if self.metrics is not None:
            self.metrics.requests_refused.labels(DOOR, str(code)).inc()
        if self.log is not None:
            self.log.warning("mcp.request_refused", door=DOOR, code=str(code), **fields)

    def definition_changed(
        self, upstream: str, tool: str, pinned_hash: str | None, new_hash: str, *, first_time: bool
    ) -> None:
        if not first_time:
            return
        if self._counters is not None:
            self._counters.definition_changes.labels(upstream).inc()
        if self.log is not None:
            self.log.warning(
                "mcp.tool_definition_changed",
                door=DOOR,
                code=str(ErrorCode.REQUEST_TOOL_DEFINITION_CHANGED),
                upstream=upstream,
                tool=tool,
                pinned_hash=pinned_hash,
                new_hash=new_hash,
            )

    def definition_pinned(self, upstream: str, tool: str, definition_hash: str) -> None:
        if self.log is not None:
            self.log.info(
                "mcp.tool_definition_pinned",
                door=DOOR,
                upstream=upstream,
                tool=tool,
                hash=definition_hash,
            )

    def upstream_failed(self, upstream: str, reason: str) -> None:
        if self._counters is not None:
            self._counters.upstream_errors.labels(upstream).inc()
        if self.log is not None:
            self.log.warning("mcp.upstream_failed", door=DOOR, upstream=upstream, reason=reason)

    def note(self, event: str, **fields: object) -> None:
        if self.log is not None:
            self.log.info(event, door=DOOR, **fields)


__all__ = ["DOOR", "McpTelemetry"]
