"""DESIGN.md §6's fail-mode matrix at the MCP door: the decision core ok /
raising / slow / store down, crossed with a declared read tool (the policy's
``defaults.fail_mode.read: open``: fails open) and a write tool (fails closed).
Each cell asserts the JSON-RPC answer, the counters and the JSON log line."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import bounded, error_of, make_rig

from aegis.doors.mcp import POLICY_DENIED
from aegis.testing.pipelines import FAILURES

pytestmark = pytest.mark.anyio

READ = ("ref.read_file", {"path": "/tmp/x"}, "read_file")
WRITE = ("ref.transfer", {"amount": 5, "to": "acct-1"}, "transfer")
CONDITIONS = [None, *FAILURES]


@pytest.mark.parametrize("failure", CONDITIONS, ids=[c or "ok" for c in CONDITIONS])
@pytest.mark.parametrize("target", [READ, WRITE], ids=["declared-read", "write"])
@bounded()
async def test_fail_mode_matrix(
    failure: str | None, target: tuple[str, dict[str, object], str]
) -> None:
    tool, arguments, upstream_name = target
    rig = make_rig(failure=failure)
    is_read = target is READ
    async with rig.agent() as agent:
        listed = {t.name for t in (await agent.list_tools()).tools}
        # tools/list fails the same way: the read stays listed, the write is hidden.
        assert (tool in listed) is (failure is None or is_read)
        errors_before = rig.metric("aegis_pipeline_errors_total", door="mcp", error=_code(failure))
        open_before = rig.metric("aegis_fail_open_total", door="mcp", error=_code(failure))
        lines_before = len(rig.events("decision.could_not_decide"))

        if failure is None or is_read:
            result = await agent.call_tool(tool, arguments)
            assert not result.is_error
            assert rig.upstream.called(upstream_name) == [arguments]
        else:
            with pytest.raises(MCPError) as caught:
                await agent.call_tool(tool, arguments)
            code, body = error_of(caught.value)
            assert code == POLICY_DENIED
            assert body["code"] == "decision.fail_closed"
            assert body["outcome"] == "deny"
            assert _code(failure) in body["reason"]
            assert rig.upstream.called(upstream_name) == []

    errors = (
        rig.metric("aegis_pipeline_errors_total", door="mcp", error=_code(failure)) - errors_before
    )
    opened = rig.metric("aegis_fail_open_total", door="mcp", error=_code(failure)) - open_before
    new_lines = rig.events("decision.could_not_decide")[lines_before:]
    if failure is None:
        assert (errors, opened, new_lines) == (0, 0, [])
        return
    assert errors == 1
    assert opened == (1 if is_read else 0)
    (line,) = [line for line in new_lines if line["tool"] == tool]
    assert line["level"] == "warning"
    assert line["door"] == "mcp"
    assert line["error"] == _code(failure)
    assert line["fail_mode"] == ("open" if is_read else "closed")
    assert (line["tenant"], line["agent_id"]) == ("acme", "support-bot")


def _code(failure: str | None) -> str:
    return "" if failure is None else str(FAILURES[failure][1])


@bounded()
async def test_an_agent_cannot_talk_a_write_into_failing_open() -> None:
    """A tool the *upstream* annotates read-only but the policy does not declare
    is matched as a read, yet fails closed: only policy declarations fail open."""
    rig = make_rig(failure="raising")
    async with rig.agent() as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.with_progress", {})  # readOnlyHint, undeclared
    assert error_of(caught.value)[1]["code"] == "decision.fail_closed"
    assert rig.upstream.calls == []
