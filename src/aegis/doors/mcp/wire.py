"""How Aegis answers an MCP client that it will not serve: JSON-RPC errors.

JSON-RPC 2.0 §5.1 reserves -32000..-32099 for implementation-defined server
errors. The MCP 2026-07-28 allocation policy narrows the free band to
-32000..-32019 (-32020 and up are allocated by the spec; -32002 and -32042 are
retired and never reused; the Python SDK uses -32000 and -32001 internally for
"connection closed" and "request timeout"). Aegis therefore uses -32010..-32015:

==========  ===================================  =======================================
code        meaning                              ``error.data``
==========  ===================================  =======================================
-32010      denied by policy (incl. fail-closed) Decision.error_body()
-32011      approval needed                      Decision.error_body(), with approval_id
-32012      a limit or budget refused the call   Decision.error_body(), with retry_after
-32013      the tool's definition changed        RequestError body with the hashes
-32014      the upstream server failed           RequestError body (+ the upstream error)
-32015      identity missing or invalid          RequestError body
-32602      malformed arguments / unknown tool   RequestError body (call.* code) or none
==========  ===================================  =======================================

``error.data`` always has one ``error`` object whose ``code`` is the stable
Aegis code (docs/errors.md), so a client matches on ``data.error.code`` the
same way it does on the HTTP doors' bodies (DESIGN.md §3).
"""

from __future__ import annotations

from typing import Any, Final

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from aegis.core.decision import Decision, Outcome
from aegis.errors import CallError, ErrorCode

POLICY_DENIED: Final = -32010
APPROVAL_NEEDED: Final = -32011
LIMITED: Final = -32012
TOOL_DEFINITION_CHANGED: Final = -32013
UPSTREAM_FAILED: Final = -32014
IDENTITY_REFUSED: Final = -32015

#: Upstream JSON-RPC error codes passed through unchanged: they describe the
#: agent's own request (spec 2025-11-25 server/tools "Error Handling": unknown
#: tools and invalid arguments are -32602; server/resources "Error Handling":
#: an unknown resource is -32002). Any other upstream error becomes
#: UPSTREAM_FAILED, so an upstream can never mint an Aegis code.
PASSTHROUGH_CODES: Final = frozenset({-32600, -32601, -32602, -32002})


def decision_code(decision: Decision) -> int:
    if decision.outcome is Outcome.APPROVAL_NEEDED:
        return APPROVAL_NEEDED
    if decision.retry_after is not None:
        return LIMITED
    return POLICY_DENIED


def decision_error(decision: Decision) -> MCPError:
    """The JSON-RPC error for a call the decision does not let through."""
    code = decision_code(decision)
    if code == APPROVAL_NEEDED:
        message = f"approval required ({decision.approval_id}): {decision.reason}"
    elif code == LIMITED:
        message = f"limit reached, retry after {decision.retry_after}s: {decision.reason}"
    else:
        message = f"denied by policy: {decision.reason}"
    return MCPError(code, message, decision.error_body())


def request_body(code: ErrorCode, reason: str, **details: Any) -> dict[str, Any]:
    """The ``error.data`` of a refusal made at the door, before any decision."""
    return {"error": {"type": "RequestError", "code": str(code), "reason": reason, **details}}


def request_error(rpc_code: int, code: ErrorCode, reason: str, **details: Any) -> MCPError:
    return MCPError(rpc_code, reason, request_body(code, reason, **details))


def call_error(exc: CallError) -> MCPError:
    """Arguments that cannot be decided (too deep, too large, not JSON-representable):
    invalid params, never forwarded."""
    reason = f"invalid arguments: {exc.message}"
    return MCPError(
        INVALID_PARAMS,
        reason,
        request_body(exc.code, reason, path=exc.path.removeprefix("params").lstrip(".")),
    )


def upstream_error(upstream: str, reason: str, upstream_error: MCPError | None = None) -> MCPError:
    """An upstream failure. The upstream's own error is passed through when it
    concerns the agent's request, and nested otherwise."""
    if upstream_error is not None and upstream_error.code in PASSTHROUGH_CODES:
        return MCPError(upstream_error.code, upstream_error.message, upstream_error.data)
    details: dict[str, Any] = {"upstream": upstream}
    if upstream_error is not None:
        details["upstream_error"] = {
            "code": upstream_error.code,
            "message": upstream_error.message[:1000],
        }
    return request_error(
        UPSTREAM_FAILED,
        ErrorCode.REQUEST_UPSTREAM_FAILED,
        f"upstream {upstream!r}: {reason}",
        **details,
    )


__all__ = [
    "APPROVAL_NEEDED",
    "IDENTITY_REFUSED",
    "LIMITED",
    "PASSTHROUGH_CODES",
    "POLICY_DENIED",
    "TOOL_DEFINITION_CHANGED",
    "UPSTREAM_FAILED",
    "call_error",
    "decision_code",
    "decision_error",
    "request_body",
    "request_error",
    "upstream_error",
]
