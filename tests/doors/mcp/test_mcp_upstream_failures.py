"""Upstream failures: an upstream error, an upstream process that dies mid-call,
and one that cannot be started. Each is a clean -32014 (or unknown tool), the
door keeps serving, and the next call reconnects."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import POLICY, bounded, error_of, make_rig

from aegis.doors.mcp import UPSTREAM_FAILED, StdioUpstream, UpstreamConfig

pytestmark = pytest.mark.anyio

ALL_CALLS = POLICY + '  - {id: all-calls, match: {tools: ["ref.*"], phase: call}, effect: allow}\n'
SCRIPT = Path(__file__).resolve().parent / "mcp_reference_server.py"


@bounded()
async def test_an_upstream_json_rpc_error_is_wrapped_not_passed_through() -> None:
    rig = make_rig(ALL_CALLS)
    async with rig.agent() as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.crash", {})
        code, body = error_of(caught.value)
        assert code == UPSTREAM_FAILED == -32014
        assert body["code"] == "request.upstream_failed"
        assert body["upstream"] == "ref"
        assert "fell over" in body["upstream_error"]["message"]  # the SDK sends code 0 for a raise
        assert not (await agent.call_tool("ref.echo", {})).is_error  # still serving


@bounded(60)
async def test_a_dead_stdio_upstream_fails_the_call_and_is_restarted() -> None:
    upstream = UpstreamConfig(
        "ref", StdioUpstream(sys.executable, (str(SCRIPT),)), timeout_seconds=20
    )
    rig = make_rig(ALL_CALLS, upstreams=[upstream])
    async with rig.agent() as agent:
        assert not (await agent.call_tool("ref.echo", {"n": 1})).is_error
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.exit", {})
        code, body = error_of(caught.value)
        assert code == UPSTREAM_FAILED
        assert body["code"] == "request.upstream_failed"
        assert rig.metric("aegis_mcp_upstream_errors_total", upstream="ref") >= 1
        # The next call starts a new upstream process.
        assert not (await agent.call_tool("ref.echo", {"n": 2})).is_error
    assert rig.events("mcp.upstream_failed")


@bounded(60)
async def test_an_upstream_that_cannot_start_leaves_the_others_usable() -> None:
    from mcp_reference_server import ReferenceUpstream

    from aegis.doors.mcp import InProcessUpstream

    working = ReferenceUpstream("working")
    rig = make_rig(
        POLICY.replace('"ref.echo", "other.echo"', '"ref.echo", "other.echo", "good.echo"'),
        upstreams=[
            UpstreamConfig("broken", StdioUpstream("/nonexistent/mcp-server"), timeout_seconds=5),
            UpstreamConfig("good", InProcessUpstream(working.server)),
        ],
    )
    async with rig.agent() as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        assert "good.echo" in names
        assert not any(name.startswith("broken.") for name in names)
        assert not (await agent.call_tool("good.echo", {})).is_error
    (failure, *_) = rig.events("mcp.upstream_failed")
    assert failure["upstream"] == "broken"
