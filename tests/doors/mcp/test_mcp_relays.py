"""What the proxy relays besides tool calls: server-to-client requests made
during a call (sampling, elicitation), log and progress notifications, and the
opt-in passthrough of resources, prompts and completions."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_helpers import bounded, make_rig

from aegis.doors.mcp.config import Passthrough

pytestmark = pytest.mark.anyio


@bounded()
async def test_sampling_during_a_call_reaches_the_agent() -> None:
    rig = make_rig()
    asked: list[str] = []

    async def sampling(
        _ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        asked.append(content.text if isinstance(content, types.TextContent) else "?")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="m"
        )

    async with rig.agent(sampling_callback=sampling) as agent:
        result = await agent.call_tool("ref.ask_llm", {"prompt": "meaning of life?"})
    assert asked == ["meaning of life?"]
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == "model said: forty-two"


@bounded()
async def test_elicitation_during_a_call_reaches_the_agent() -> None:
    rig = make_rig()

    async def elicit(
        _ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert params.message == "Really?"
        return types.ElicitResult(action="accept", content={"ok": True})

    async with rig.agent(elicitation_callback=elicit) as agent:
        result = await agent.call_tool("ref.confirm", {"message": "Really?"})
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == 'user: accept {"ok": true}'


@bounded()
async def test_an_agent_without_sampling_never_gets_sampling_requests() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        # The upstream's sampling request is refused on the agent's behalf (the
        # proxy did not advertise sampling upstream), so the tool fails.
        with pytest.raises(MCPError):
            await agent.call_tool("ref.ask_llm", {"prompt": "hi"})


@bounded()
async def test_log_and_progress_notifications_are_forwarded() -> None:
    rig = make_rig(
        policy=_allow_everything_on_call(),
    )
    logs: list[Any] = []
    seen_progress: list[float] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen_progress.append(progress)

    async with rig.agent(logging_callback=on_log) as agent:
        await agent.call_tool("ref.with_logging", {})
        await agent.call_tool("ref.with_progress", {}, progress_callback=on_progress)
    assert logs == ["started", "working", "finished"]
    assert seen_progress == [0, 50, 100]


@bounded()
async def test_passthrough_is_off_by_default() -> None:
    rig = make_rig()
    async with rig.agent() as agent:
        assert agent.server_capabilities.resources is None
        assert agent.server_capabilities.prompts is None
        assert agent.server_capabilities.tools is not None
        with pytest.raises(MCPError) as caught:
            await agent.session.send_request(
                types.ListResourcesRequest(), types.ListResourcesResult
            )
    assert caught.value.code == types.METHOD_NOT_FOUND


@bounded()
async def test_resources_and_prompts_pass_through_when_enabled() -> None:
    rig = make_rig(passthrough=Passthrough(resources=True, prompts=True, completions=True))
    async with rig.agent() as agent:
        resources = await agent.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["ref://readme"]
        read = await agent.read_resource("ref://readme")
        assert isinstance(read.contents[0], types.TextResourceContents)
        assert read.contents[0].text == "hello"
        prompts = await agent.list_prompts()
        assert [p.name for p in prompts.prompts] == ["ref.greet"]
        prompt = await agent.get_prompt("ref.greet")
        assert isinstance(prompt.messages[0].content, types.TextContent)
        assert prompt.messages[0].content.text == "hello from greet"
        with pytest.raises(MCPError):
            await agent.get_prompt("unprefixed")


def _allow_everything_on_call() -> str:
    from mcp_helpers import POLICY

    return POLICY + '  - {id: all-calls, match: {tools: ["ref.*"], phase: call}, effect: allow}\n'
