"""The MCP proxy door, with an in-process upstream that has every tool the cases name.

The agent side is the MCP SDK's ``Client`` connected to the proxy's server in
process (the proxy's stdio/in-process mode): the identity -- tenant, agent id
and labels -- is the proxy configuration's, so there is one proxy per identity.
Tool names pass through (``prefix: ""``). The kind comes from the tool's
annotations, so there are two upstreams with the same tool names, one marking
every tool ``readOnlyHint: true``; a call that states ``kind: read`` goes
through a proxy in front of that one, any other call through the other
(an unstated kind is decided as a write: ``CompiledPolicy.kind_of``).

What the door cannot state exactly is skipped: a parent chain and a session id
(the door sets the session from its transport: none in process), a cost
estimate, trace context (carried in ``_meta``; not exercised here), and a
call's own ``destination`` (the door sets the upstream's, ``inproc:agree``).
A ``phase: list`` call is asked as ``tools/list``: listed exactly when the
recorded list decision for that tool permits it.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import mcp_types as types
from agree_core import (
    Door,
    Plan,
    Probe,
    Recorded,
    RecordingEvidence,
    Reply,
    door_call_plan,
    json_exact,
    json_same,
    with_fields,
)
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from aegis.core.call import McpPhase, ToolCall, ToolKind, parse_call
from aegis.core.decision import Outcome
from aegis.doors.mcp import (
    AgentIdentity,
    InProcessUpstream,
    McpProxy,
    McpProxyConfig,
    UpstreamConfig,
    build_mcp_proxy,
)
from aegis.doors.mcp.wire import decision_code
from aegis.errors import CallError
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy
from mcp import Client

UPSTREAM = "agree"
DESTINATION = f"inproc:{UPSTREAM}"
_ANY_OBJECT = {"type": "object"}


def upstream_server(tools: list[str], *, read_only: bool) -> Server[Any]:
    """An upstream listing ``tools``, each accepting any object; a call answers
    with the arguments it received, so the test sees what was forwarded."""
    annotations = types.ToolAnnotations(read_only_hint=True) if read_only else None
    listed = [
        types.Tool(name=name, input_schema=_ANY_OBJECT, annotations=annotations) for name in tools
    ]

    async def list_tools(ctx: Any, params: object) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = json.dumps({"tool": params.name, "arguments": params.arguments})
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server(UPSTREAM, on_list_tools=list_tools, on_call_tool=call_tool)


def _unsendable(call: ToolCall) -> str | None:
    if call.parent_chain:
        return "parent_chain: MCP carries no parent chain"
    if call.session_id:
        return "session_id: the door takes it from its transport session"
    if call.cost_estimate is not None:
        return "cost_estimate: MCP carries no cost"
    if call.destination is not None:
        return "destination: the door sets the upstream's"
    if call.trace.traceparent or call.trace.tracestate:
        return "trace context: carried in _meta, not exercised here"
    if call.phase is McpPhase.LIST and call.params:
        return "phase list with params: tools/list has no arguments"
    return None


class McpDoor(Door):
    name = label = "mcp"

    def __init__(
        self, sink: RecordingEvidence, pipeline: Pipeline, tools: list[str], stack: AsyncExitStack
    ) -> None:
        super().__init__(sink)
        self.pipeline = pipeline
        self.stack = stack
        self.upstreams = {read: upstream_server(tools, read_only=read) for read in (False, True)}
        self.clients: dict[tuple[str, str, tuple[str, ...], bool], Client] = {}
        self.proxies: list[McpProxy] = []

    async def _client(self, call: ToolCall) -> Client:
        read = call.kind is ToolKind.READ
        key = (call.tenant, call.agent_id, tuple(sorted(call.agent_labels)), read)
        client = self.clients.get(key)
        if client is None:
            config = McpProxyConfig(
                upstreams=(UpstreamConfig(UPSTREAM, InProcessUpstream(self.upstreams[read]), ""),),
                identity=AgentIdentity(call.tenant, call.agent_id, labels=key[2]),
            )
            proxy = build_mcp_proxy(self.pipeline, config)
            self.proxies.append(proxy)
            client = await self.stack.enter_async_context(Client(proxy.server, mode="legacy"))
            self.clients[key] = client
        return client

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        raw = probe.raw
        if not isinstance(raw, dict):
            return "not a call object: tools/call names a tool and its arguments"
        if probe.error is not None:
            # Only arguments can be wrong on this wire: the rest is the door's own.
            params = raw.get("params")
            try:
                base = parse_call({k: v for k, v in raw.items() if k != "params"})
            except CallError:
                return "refused outside params: the door builds those fields itself"
            if not isinstance(params, dict):
                return "params not an object: arguments are an object"
            if not json_exact(params):
                return "not JSON (NaN, infinity, a date): JSON-RPC cannot state it"
            why = _unsendable(base)
            return why or Plan(error=str(probe.error.code), send=(base, params))
        call = probe.call
        assert call is not None
        why = _unsendable(call)
        if why is not None:
            return why
        if not json_exact(dict(call.params)):
            return "not JSON: JSON-RPC cannot state it"
        door_call = with_fields(call, kind=call.kind or ToolKind.WRITE, destination=DESTINATION)
        send = (door_call, dict(call.params))
        return door_call_plan(probe, policy, door_call, send, "MCP states a kind and destination")

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        call, params = plan.send
        client = await self._client(call)
        if call.phase is McpPhase.LIST:
            listed = await client.list_tools(cache_mode="bypass")
            return Reply(None, [tool.name for tool in listed.tools])
        try:
            result = await client.call_tool(call.tool, params)
        except MCPError as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            return Reply(data.get("error", {}).get("decision_id"), exc)
        return Reply(None, result)

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        decision = rec.decision
        if rec.call.phase is McpPhase.LIST:
            listed = rec.call.tool in reply.data
            if listed != decision.permits:
                return [f"listed={listed} but the list decision is {decision.outcome}"]
            return []
        got = reply.data
        if decision.permits:
            if not isinstance(got, types.CallToolResult) or got.is_error:
                return [f"a permitted call answered {got!r}"]
            block = got.content[0]
            assert isinstance(block, types.TextContent)
            forwarded = json.loads(block.text)["arguments"]
            want: Any = dict(rec.call.params)
            if decision.outcome is Outcome.SANITIZE and decision.sanitized_params is not None:
                want = decision.sanitized_params
            if not json_same(forwarded, want):
                return [f"forwarded {forwarded!r}, want {want!r}"]
            return []
        if not isinstance(got, MCPError):
            return [f"a refused call answered {got!r}"]
        out = []
        if got.code != decision_code(decision):
            out.append(f"JSON-RPC code {got.code}, want {decision_code(decision)}")
        if not json_same(got.data, decision.error_body()):
            out.append(f"error.data {got.data!r}, want {decision.error_body()!r}")
        return out

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        got = reply.data
        if not isinstance(got, MCPError):
            return [f"not refused: {got!r}"]
        data = got.data if isinstance(got.data, dict) else {}
        code = data.get("error", {}).get("code")
        if got.code != INVALID_PARAMS or code != plan.error:
            return [f"refused with {got.code} / {code!r}, want {INVALID_PARAMS} / {plan.error}"]
        return []
