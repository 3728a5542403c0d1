"""Who is calling: tenant, agent and parent chain for guarded tools.

A guarded tool learns its caller from its own arguments (``guard(tenant=...)``)
or from the :func:`aegis_context` around the call, a context variable, so it
follows the call through threads started with ``contextvars.copy_context`` and
through asyncio tasks. Explicit arguments win over the context: a tool pinned
to a tenant stays pinned. Nested contexts override only the fields they name.

    with aegis_context(tenant="acme", agent_id="finance-agent", parent_chain=["planner"]):
        create_payment(amount=120, currency="USD")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from aegis.core.call import ToolCall, ToolKind
from aegis.errors import ErrorCode
from aegis.sdk.errors import InvalidCall
from aegis.sdk.wire import validate_call


@dataclass(frozen=True, slots=True)
class CallerContext:
    """The caller fields a guarded call takes from the context (unset: ``None``)."""

    tenant: str | None = None
    agent_id: str | None = None
    parent_chain: tuple[str, ...] | None = None
    agent_labels: frozenset[str] | None = None
    session_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def merged(self, inner: CallerContext) -> CallerContext:
        """This context with the fields ``inner`` sets replaced by its values."""
        changes = {
            name: getattr(inner, name)
            for name in self.__dataclass_fields__
            if getattr(inner, name) is not None
        }
        return replace(self, **changes)


# CallerContext is a frozen dataclass: the shared default cannot be mutated.
_CURRENT: ContextVar[CallerContext] = ContextVar("aegis_caller", default=CallerContext())  # noqa: B039


def current_context() -> CallerContext:
    return _CURRENT.get()


@contextmanager
def aegis_context(
    *,
    tenant: str | None = None,
    agent_id: str | None = None,
    parent_chain: Iterable[str] | None = None,
    agent_labels: Iterable[str] | None = None,
    session_id: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Iterator[CallerContext]:
    """Set the caller of guarded tools for the ``with`` block (sync or async code)."""
    if isinstance(parent_chain, str) or isinstance(agent_labels, str):
        raise TypeError("parent_chain and agent_labels are lists of names, not one string")
    inner = CallerContext(
        tenant=tenant,
        agent_id=agent_id,
        parent_chain=tuple(parent_chain) if parent_chain is not None else None,
        agent_labels=frozenset(agent_labels) if agent_labels is not None else None,
        session_id=session_id,
        traceparent=traceparent,
        tracestate=tracestate,
    )
    merged = _CURRENT.get().merged(inner)
    token = _CURRENT.set(merged)
    try:
        yield merged
    finally:
        _CURRENT.reset(token)


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Everything about a guarded tool's calls except its params.

    Fields left ``None`` come from :func:`aegis_context` when a call is built.
    """

    tool: str
    tenant: str | None = None
    agent_id: str | None = None
    kind: ToolKind | None = None
    parent_chain: tuple[str, ...] | None = None
    agent_labels: frozenset[str] | None = None
    session_id: str | None = None
    destination: str | None = None
    cost_estimate: float | None = None

    def build(self, params: Mapping[str, Any]) -> ToolCall:
        """The ToolCall for one invocation, validated (raises InvalidCall).

        A missing tenant or agent id is a ``call.missing_field`` error naming
        where to set it, never a call decided without its caller.
        """
        ctx = _CURRENT.get()
        data: dict[str, Any] = {
            "tenant": _caller_field("tenant", self.tenant, ctx.tenant),
            "agent_id": _caller_field("agent_id", self.agent_id, ctx.agent_id),
            "tool": self.tool,
            "params": dict(params),
            "kind": str(self.kind) if self.kind is not None else None,
            "parent_chain": list(_first(self.parent_chain, ctx.parent_chain) or ()),
            "agent_labels": sorted(_first(self.agent_labels, ctx.agent_labels) or ()),
            "session_id": _first(self.session_id, ctx.session_id),
            "destination": self.destination,
            "cost_estimate": self.cost_estimate,
            "traceparent": ctx.traceparent,
            "tracestate": ctx.tracestate,
        }
        return validate_call(data)


def _caller_field(name: str, explicit: str | None, contextual: str | None) -> str:
    value = explicit if explicit is not None else contextual
    if not value:
        raise InvalidCall(
            ErrorCode.CALL_MISSING_FIELD,
            f"{name} is required: pass guard({name}=...) or set aegis_context({name}=...)",
            name,
        )
    return value


def _first(explicit: Any, contextual: Any) -> Any:
    return explicit if explicit is not None else contextual


def tool_kind(kind: ToolKind | str | None) -> ToolKind | None:
    """``"read"``/``"write"`` (or a ToolKind) as a ToolKind; ``None`` stays unset."""
    return None if kind is None else ToolKind(kind)
