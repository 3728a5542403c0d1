"""The four outcomes and limits through the MCP proxy, tools/list filtering,
namespacing, and what the pipeline is told about each call."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import IDENTITY, POLICY, bounded, error_of, make_rig
from mcp_reference_server import ReferenceUpstream

from aegis.core.call import McpPhase, ToolCall, ToolKind
from aegis.doors.mcp import (
    APPROVAL_NEEDED,
    LIMITED,
    POLICY_DENIED,
    InProcessUpstream,
    UpstreamConfig,
)
from aegis.pipeline import RequestContext
from aegis.pipeline.stages import PipelineResult
from aegis.testing.pipelines import LimitedStage

pytestmark = pytest.mark.anyio


def _payload(result: types.CallToolResult) -> dict[str, Any]:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    parsed: dict[str, Any] = json.loads(block.text)
    return parsed


@bounded()
async def test_allowed_read_is_forwarded_and_answered() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        result = await agent.call_tool("ref.read_file", {"path": "/etc/motd"})
    assert not result.is_error
    assert _payload(result) == {"tool": "read_file", "arguments": {"path": "/etc/motd"}}
    assert rig.upstream.called("read_file") == [{"path": "/etc/motd"}]
    # The SDK client lists tools before it validates a result, so the list
    # decision is counted beside the call's.
    assert (
        rig.metric("aegis_decisions_total", outcome="allow", tool="ref.read_file", door="mcp") >= 1
    )


@bounded()
async def test_denied_call_is_a_json_rpc_error_and_never_forwarded() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.delete_file", {"path": "/"})
        code, body = error_of(caught.value)
        assert code == POLICY_DENIED == -32010
        assert body["type"] == "PolicyViolation"
        assert body["code"] == "decision.denied_by_rule"
        assert body["outcome"] == "deny"
        assert body["rule_ids"] == ["no-delete"]
        assert body["reason"] == "deleting files is not allowed"
        assert body["policy_version"] == "v7"
        assert body["decision_id"]
        # The connection is still usable after a refusal.
        assert not (await agent.call_tool("ref.read_file", {"path": "a"})).is_error
    assert rig.upstream.called("delete_file") == []


@bounded()
async def test_sanitize_forwards_the_sanitized_arguments() -> None:
    rig = make_rig()
    card = "4111 1111 1111 1111"
    async with rig.agent() as agent:
        result = await agent.call_tool(
            "ref.send_email", {"to": "a@b.example", "body": f"card {card} ok"}
        )
    forwarded = rig.upstream.called("send_email")
    assert forwarded == [{"to": "a@b.example", "body": "card [REDACTED:credit_card] ok"}]
    assert card not in json.dumps(_payload(result))
    assert card not in rig.stream.getvalue()  # the secret never reaches the log either


@bounded()
async def test_approval_needed_carries_the_approval_id() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        assert not (await agent.call_tool("ref.transfer", {"amount": 50, "to": "x"})).is_error
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.transfer", {"amount": 5000, "to": "x"})
    code, body = error_of(caught.value)
    assert code == APPROVAL_NEEDED == -32011
    assert body["code"] == "decision.approval_required"
    assert body["outcome"] == "approval_needed"
    assert body["approval_id"].startswith("apr_")
    assert body["approval_id"] in caught.value.message
    assert rig.upstream.called("transfer") == [{"amount": 50, "to": "x"}]


@bounded()
async def test_limits_answer_with_retry_after() -> None:
    rig = make_rig(limits=LimitedStage(retry_after=12.5))
    async with rig.agent() as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.read_file", {"path": "a"})
    code, body = error_of(caught.value)
    assert code == LIMITED == -32012
    assert body["code"] == "decision.limit_exceeded"
    assert body["retry_after"] == 12.5
    assert rig.upstream.calls == []


@bounded()
async def test_tools_list_is_filtered_by_list_phase_policy() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        listed = {tool.name: tool for tool in (await agent.list_tools()).tools}
    assert "ref.admin_reset" not in listed  # rule hide-admin (phase: list)
    # Call-phase denials do not hide a tool: delete_file is listed, its calls refused.
    assert {"ref.read_file", "ref.delete_file", "ref.weather", "ref.echo"} <= set(listed)
    assert listed["ref.read_file"].description == "Read a file."
    assert listed["ref.read_file"].annotations is not None
    assert listed["ref.read_file"].annotations.read_only_hint is True
    assert rig.upstream.calls == []  # listing calls nothing


@bounded()
async def test_a_tool_no_list_rule_allows_is_not_listed() -> None:
    policy = POLICY.replace('tools: ["*"], phase: list', 'tools: ["ref.read_file"], phase: list')
    rig = make_rig(policy)
    async with rig.agent() as agent:
        names = [tool.name for tool in (await agent.list_tools()).tools]
    assert names == ["ref.read_file"]


@bounded()
async def test_unknown_tool_is_invalid_params_and_not_forwarded() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.nope", {})
        assert caught.value.code == types.INVALID_PARAMS
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("read_file", {})  # without its namespace
        assert caught.value.code == types.INVALID_PARAMS
    assert rig.upstream.calls == []
    assert rig.metric("aegis_requests_refused_total", door="mcp", code="request.not_found") == 2


@bounded()
async def test_upstream_tool_errors_pass_through_as_results() -> None:
    rig = make_rig(
        POLICY.replace("ref.ask_llm, ref.confirm", "ref.ask_llm, ref.confirm, ref.failing")
    )
    async with rig.agent() as agent:
        result = await agent.call_tool("ref.failing", {})
    assert result.is_error is True
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == "it broke"


class _Recording:
    """Wraps a pipeline's decide() to see the ToolCalls the door builds."""

    def __init__(self) -> None:
        self.seen: list[tuple[ToolCall, RequestContext]] = []

    def wrap(self, pipeline: Any) -> None:
        original = pipeline.decide

        async def decide(call: ToolCall, ctx: RequestContext) -> PipelineResult:
            self.seen.append((call, ctx))
            result: PipelineResult = await original(call, ctx)
            return result

        pipeline.decide = decide


@bounded()
async def test_the_tool_call_the_pipeline_sees() -> None:
    rig = make_rig()
    recording = _Recording()
    recording.wrap(rig.pipeline)
    async with rig.agent() as agent:
        await agent.list_tools()
        await agent.call_tool("ref.weather", {"city": "Oslo"})
        await agent.call_tool("ref.echo", {"n": 1})
    listed = [call for call, _ in recording.seen if call.phase is McpPhase.LIST]
    assert all(call.params == {} for call in listed)
    assert {call.tool for call in listed} >= {"ref.weather", "ref.admin_reset"}
    calls = [(call, ctx) for call, ctx in recording.seen if call.phase is McpPhase.CALL]
    (weather, wctx), (echo, _) = calls
    assert (weather.tenant, weather.agent_id) == (IDENTITY.tenant, IDENTITY.agent_id)
    assert weather.tool == "ref.weather"
    assert weather.params == {"city": "Oslo"}
    assert weather.kind is ToolKind.READ  # readOnlyHint
    assert echo.kind is ToolKind.WRITE  # no annotations: readOnlyHint defaults to false
    assert weather.destination == "inproc:reference"
    assert wctx.door == "mcp"
    assert wctx.credentials == IDENTITY.credentials


@bounded()
async def test_two_upstreams_are_namespaced() -> None:
    second = ReferenceUpstream("second")
    rig = make_rig(
        upstreams=[
            UpstreamConfig("ref", InProcessUpstream(ReferenceUpstream("first").server)),
            UpstreamConfig("other", InProcessUpstream(second.server)),
        ]
    )
    async with rig.agent() as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        result = await agent.call_tool("other.echo", {"from": "other"})
    assert {"ref.echo", "other.echo", "ref.read_file", "other.read_file"} <= names
    assert _payload(result) == {"tool": "echo", "arguments": {"from": "other"}}
    assert second.called("echo") == [{"from": "other"}]


@bounded()
async def test_custom_and_empty_prefixes() -> None:
    only = ReferenceUpstream("only")
    policy = POLICY.replace('"ref.echo", "other.echo"', '"ref.echo", "other.echo", "echo"')
    rig = make_rig(
        policy, upstreams=[UpstreamConfig("solo", InProcessUpstream(only.server), prefix="")]
    )
    async with rig.agent() as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        await agent.call_tool("echo", {"x": 1})
    assert "echo" in names and "read_file" in names
    assert only.called("echo") == [{"x": 1}]


@bounded()
async def test_name_collisions_keep_the_first_upstream() -> None:
    first, second = ReferenceUpstream("first"), ReferenceUpstream("second")
    policy = POLICY.replace('"ref.echo", "other.echo"', '"a_echo", "echo"')
    rig = make_rig(
        policy,
        upstreams=[
            UpstreamConfig("one", InProcessUpstream(first.server), prefix=""),
            UpstreamConfig("two", InProcessUpstream(second.server), prefix="a_"),
        ],
    )
    # "a_echo" is both the second upstream's "echo" and, if the first had one,
    # the first's "a_echo": add it to the first to force the collision.
    first.add_tool(first.tools["echo"].model_copy(update={"name": "a_echo"}))
    async with rig.agent() as agent:
        names = [tool.name for tool in (await agent.list_tools()).tools]
        await agent.call_tool("a_echo", {})
    assert names.count("a_echo") == 1
    assert first.called("a_echo") == [{}] and second.called("echo") == []
    assert rig.events("mcp.tool_name_collision")[0]["kept"] == "one"
