"""LangChain adapter: any ``BaseTool`` behind an Aegis decision.

::

    from aegis.sdk.langchain import guard_tool

    pay = guard_tool(create_payment, aegis, name="stripe.create_payment",
                     tenant="acme", agent_id="finance-agent")
    pay.invoke({"amount": 120, "currency": "USD"})

The guarded tool has the wrapped tool's name, description and argument schema,
so a model binds it exactly as before. Every ``invoke``/``ainvoke`` (and the
older ``run``/``arun``) first asks Aegis, with the Aegis tool name (``name=``:
a string, or a mapping from LangChain tool names) and the tool's input as
params -- validated by the tool's own schema first, so the policy judges what
the tool would receive; only the arguments the model supplies, not injected
ones. Then:

* allow: the wrapped tool runs, with everything LangChain does for it
  (callbacks, ToolMessage with the tool call id, artifacts, error handling);
* sanitize: it runs with the redacted values in place of the originals;
* otherwise ``on_violation`` says what happens. ``"raise"`` (the default)
  raises :class:`~aegis.sdk.errors.PolicyViolation`, or its subclasses
  ``ApprovalRequired`` and ``RateLimited``: a denied call stops the agent loop
  unless the application handles it, as an exception from any tool would, and
  approval_needed can pause the run (a LangGraph interrupt, say) until a human
  decides. ``"message"`` returns the PolicyViolation JSON body as the tool's
  result instead -- a ``ToolMessage`` with ``status="error"`` when invoked with
  a tool call, as LangChain's ``handle_tool_error`` does -- so the model sees
  why and can choose another action. The wrapped tool does not run either way.

Errors that are not decisions (AegisUnavailable under a closed fail mode,
InvalidCall) are raised in both modes.

This module imports ``langchain_core``; the rest of :mod:`aegis.sdk` does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

try:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool
    from pydantic import BaseModel, PrivateAttr
except ImportError as exc:  # pragma: no cover -- exercised in a subprocess test
    raise ImportError(
        "aegis.sdk.langchain needs langchain-core: pip install 'langchain-core>=0.3' "
        "(the rest of aegis.sdk works without it)"
    ) from exc

from aegis.core.call import JsonValue, ToolCall, ToolKind
from aegis.core.decision import Decision
from aegis.sdk.context import CallSpec, tool_kind
from aegis.sdk.errors import PolicyViolation, raise_for_decision
from aegis.sdk.guard import decide_async
from aegis.sdk.params import json_params, sanitized_updates
from aegis.sdk.protocols import AnyAegis, SyncAegis, is_async_aegis

__all__ = ["GuardedTool", "OnViolation", "guard_tool", "guard_tools"]

OnViolation = Literal["raise", "message"]
ToolInput = str | dict[str, Any]


class GuardedTool(BaseTool):
    """A LangChain tool whose every run is decided by Aegis first (see module docs)."""

    inner: BaseTool
    aegis_tool: str
    on_violation: OnViolation = "raise"

    _aegis: AnyAegis = PrivateAttr()
    _spec: CallSpec = PrivateAttr()

    def run(self, tool_input: ToolInput, *args: Any, **kwargs: Any) -> Any:
        call = self._call(tool_input)
        if is_async_aegis(self._aegis):
            raise TypeError(
                f"tool {self.name!r} is guarded by an async Aegis; use ainvoke, "
                "or guard it with LocalAegis / AegisClient for invoke"
            )
        sync_aegis = cast(SyncAegis, self._aegis)
        try:
            decision = raise_for_decision(sync_aegis.decide(call))
        except PolicyViolation as exc:
            return self._refuse(exc, kwargs.get("tool_call_id"))
        return self.inner.run(self._rewrite(tool_input, call, decision), *args, **kwargs)

    async def arun(self, tool_input: ToolInput, *args: Any, **kwargs: Any) -> Any:
        call = self._call(tool_input)
        try:
            decision = raise_for_decision(await decide_async(self._aegis, call))
        except PolicyViolation as exc:
            return self._refuse(exc, kwargs.get("tool_call_id"))
        return await self.inner.arun(self._rewrite(tool_input, call, decision), *args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        # Never reached: run() and arun() are overridden and delegate to the inner tool.
        raise NotImplementedError("GuardedTool runs through run()/arun()")

    # -- the call ------------------------------------------------------------------

    def _call(self, tool_input: ToolInput) -> ToolCall:
        return self._spec.build(self._params(tool_input))

    def _params(self, tool_input: ToolInput) -> dict[str, JsonValue]:
        visible = [k for k in self.inner.args if k != "kwargs"]
        if isinstance(tool_input, str):
            # LangChain hands a string input to the tool's first argument.
            return json_params([(visible[0] if visible else "input", tool_input)])
        source = _validated(self.inner, tool_input, visible)
        return json_params((k, v) for k, v in source.items() if k in visible or not visible)

    def _rewrite(self, tool_input: ToolInput, call: ToolCall, decision: Decision) -> ToolInput:
        updates = sanitized_updates(call.params, decision)
        if not updates:
            return tool_input
        if isinstance(tool_input, str):
            (new,) = updates.values()
            return new if isinstance(new, str) else json.dumps(new)
        return {**tool_input, **updates}

    def _refuse(self, exc: PolicyViolation, tool_call_id: str | None) -> Any:
        if self.on_violation == "raise":
            raise exc
        content = json.dumps(exc.to_dict(), separators=(",", ":"))
        if tool_call_id is None:
            return content
        return ToolMessage(content, tool_call_id=tool_call_id, name=self.name, status="error")


def _validated(tool: BaseTool, tool_input: dict[str, Any], visible: list[str]) -> dict[str, Any]:
    """The input as the tool's schema reads it (JSON form), or as given if it does
    not validate -- the tool will refuse it then, and the decision is still made."""
    schema = tool.args_schema
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return tool_input
    try:
        model = schema.model_validate(tool_input)
        dumped: dict[str, Any] = model.model_dump(
            mode="json", include=set(visible) & set(tool_input) | _defaults(schema, visible)
        )
    except (ValueError, TypeError):
        return tool_input
    return dumped


def _defaults(schema: type[BaseModel], visible: list[str]) -> set[str]:
    """Visible fields with a default: the tool receives them, so the policy sees them."""
    return {
        name
        for name, field in schema.model_fields.items()
        if name in visible and not field.is_required()
    }


def guard_tool(
    tool: BaseTool,
    aegis: AnyAegis,
    *,
    name: str | Mapping[str, str] | None = None,
    tenant: str | None = None,
    agent_id: str | None = None,
    kind: ToolKind | str | None = None,
    parent_chain: Iterable[str] | None = None,
    agent_labels: Iterable[str] | None = None,
    session_id: str | None = None,
    destination: str | None = None,
    cost_estimate: float | None = None,
    on_violation: OnViolation = "raise",
) -> GuardedTool:
    """Wrap ``tool`` so every run is decided by ``aegis`` first.

    ``name`` is the tool name policies know it by: a string, or a mapping from
    LangChain tool names (missing names keep the tool's own). Caller fields
    left ``None`` come from :func:`~aegis.sdk.aegis_context`.
    """
    if isinstance(parent_chain, str) or isinstance(agent_labels, str):
        raise TypeError("parent_chain and agent_labels are lists of names, not one string")
    if on_violation not in ("raise", "message"):
        raise ValueError("on_violation must be 'raise' or 'message'")
    aegis_name = name.get(tool.name, tool.name) if isinstance(name, Mapping) else name or tool.name
    guarded = GuardedTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        inner=tool,
        aegis_tool=aegis_name,
        on_violation=on_violation,
    )
    guarded._aegis = aegis
    guarded._spec = CallSpec(
        tool=aegis_name,
        tenant=tenant,
        agent_id=agent_id,
        kind=tool_kind(kind),
        parent_chain=tuple(parent_chain) if parent_chain is not None else None,
        agent_labels=frozenset(agent_labels) if agent_labels is not None else None,
        session_id=session_id,
        destination=destination,
        cost_estimate=cost_estimate,
    )
    return guarded


def guard_tools(
    tools: Iterable[BaseTool],
    aegis: AnyAegis,
    *,
    names: Mapping[str, str] | None = None,
    kinds: Mapping[str, ToolKind | str] | None = None,
    tenant: str | None = None,
    agent_id: str | None = None,
    parent_chain: Iterable[str] | None = None,
    on_violation: OnViolation = "raise",
) -> list[GuardedTool]:
    """:func:`guard_tool` for each tool, with per-tool Aegis names and kinds."""
    chain = tuple(parent_chain) if parent_chain is not None else None
    return [
        guard_tool(
            t,
            aegis,
            name=(names or {}).get(t.name),
            kind=(kinds or {}).get(t.name),
            tenant=tenant,
            agent_id=agent_id,
            parent_chain=chain,
            on_violation=on_violation,
        )
        for t in tools
    ]
