"""The LangChain adapter with real langchain-core tools."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, Tool, tool
from sdk_standin import EXAMPLES, NOW, ServerFactory

from aegis.core.call import ToolCall
from aegis.core.decision import Decision
from aegis.errors import ErrorCode
from aegis.policy import CompiledPolicy
from aegis.sdk import (
    AegisClient,
    ApprovalRequired,
    AsyncAegisClient,
    AsyncLocalAegis,
    LocalAegis,
    PolicyViolation,
    aegis_context,
)
from aegis.sdk.langchain import GuardedTool, guard_tool, guard_tools

EMAIL = "write to jane.doe@example.com"
REDACTED = "write to [REDACTED:email]"


def create_payment(amount: float, currency: str, payee: str = "") -> str:
    """Pay someone."""
    return f"paid {amount:g} {currency}"


async def acreate_payment(amount: float, currency: str, payee: str = "") -> str:
    return f"async paid {amount:g} {currency}"


def post_message(channel: str, text: str) -> str:
    """Post to Slack."""
    return f"{channel}: {text}"


@pytest.fixture
def finance_aegis() -> Iterator[LocalAegis]:
    with LocalAegis(EXAMPLES / "finance-payments", clock=lambda: NOW) as aegis:
        yield aegis


@pytest.fixture
def slack_aegis() -> Iterator[LocalAegis]:
    with LocalAegis(EXAMPLES / "slack-posting", clock=lambda: NOW) as aegis:
        yield aegis


def payment_tool(aegis: Any, **options: Any) -> GuardedTool:
    inner = StructuredTool.from_function(
        create_payment, coroutine=acreate_payment, name="create_payment"
    )
    return guard_tool(
        inner,
        aegis,
        name="stripe.create_payment",
        tenant="acme",
        agent_id="finance-agent",
        **options,
    )


def as_tool_call(args: dict[str, Any], call_id: str = "call-1") -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": "create_payment", "args": args}


def test_the_guarded_tool_looks_like_the_original(finance_aegis: LocalAegis) -> None:
    guarded = payment_tool(finance_aegis)
    assert isinstance(guarded, BaseTool)
    assert guarded.name == "create_payment"
    assert guarded.description == "Pay someone."
    assert guarded.args == guarded.inner.args
    assert guarded.aegis_tool == "stripe.create_payment"


def test_allowed_invoke_runs_the_tool(finance_aegis: LocalAegis) -> None:
    guarded = payment_tool(finance_aegis)
    assert guarded.invoke({"amount": 120, "currency": "USD"}) == "paid 120 USD"
    message = guarded.invoke(as_tool_call({"amount": 5, "currency": "EUR"}))
    assert isinstance(message, ToolMessage)
    assert (message.content, message.tool_call_id, message.status) == (
        "paid 5 EUR",
        "call-1",
        "success",
    )


def test_the_policy_judges_the_validated_input(finance_aegis: LocalAegis) -> None:
    # The tool's schema turns "100" into 100.0; the policy sees what the tool gets.
    guarded = payment_tool(finance_aegis)
    assert guarded.invoke({"amount": "100", "currency": "USD"}) == "paid 100 USD"


def test_approval_needed_raises_by_default(finance_aegis: LocalAegis) -> None:
    guarded = payment_tool(finance_aegis)
    with pytest.raises(ApprovalRequired) as caught:
        guarded.invoke(as_tool_call({"amount": 7500, "currency": "USD"}))
    assert caught.value.approval_id
    with pytest.raises(PolicyViolation) as denied:
        guarded.invoke({"amount": 10, "currency": "BTC"})
    assert denied.value.code is ErrorCode.DECISION_DEFAULT_DENY


def test_message_mode_returns_an_error_tool_message(finance_aegis: LocalAegis) -> None:
    guarded = payment_tool(finance_aegis, on_violation="message")
    message = guarded.invoke(as_tool_call({"amount": 7500, "currency": "USD"}, "c-9"))
    assert isinstance(message, ToolMessage)
    assert (message.tool_call_id, message.status, message.name) == (
        "c-9",
        "error",
        "create_payment",
    )
    body = json.loads(str(message.content))["error"]
    assert body["type"] == "PolicyViolation"
    assert body["code"] == "decision.approval_required"
    assert body["approval_id"].startswith("apr_")
    # Without a tool call id, the body is the tool's result.
    plain = guarded.invoke({"amount": 10, "currency": "BTC"})
    assert json.loads(plain)["error"]["outcome"] == "deny"
    # Permitted calls are untouched.
    assert guarded.invoke({"amount": 1, "currency": "USD"}) == "paid 1 USD"


def test_sanitize_applies_redactions(slack_aegis: LocalAegis) -> None:
    inner = StructuredTool.from_function(post_message)
    guarded = guard_tool(
        inner, slack_aegis, name="slack.post_message", tenant="acme", agent_id="status-bot"
    )
    assert guarded.invoke({"channel": "#incidents", "text": EMAIL}) == f"#incidents: {REDACTED}"
    message = guarded.invoke(
        {
            "type": "tool_call",
            "id": "x",
            "name": "post_message",
            "args": {"channel": "#incidents", "text": EMAIL},
        }
    )
    assert message.content == f"#incidents: {REDACTED}"
    with pytest.raises(PolicyViolation) as caught:
        guarded.invoke({"channel": "#random", "text": "hi"})
    assert caught.value.rule_ids == ("slack-channel-allowlist",)


def test_ainvoke_with_sync_and_async_aegis(finance_aegis: LocalAegis) -> None:
    async def scenario() -> None:
        for aegis in (finance_aegis, AsyncLocalAegis(finance_aegis.pipeline)):
            guarded = payment_tool(aegis)
            assert await guarded.ainvoke({"amount": 3, "currency": "USD"}) == "async paid 3 USD"
            with pytest.raises(ApprovalRequired):
                await guarded.ainvoke({"amount": 7000, "currency": "USD"})

    asyncio.run(scenario())


def test_sync_invoke_needs_a_sync_aegis(finance_aegis: LocalAegis) -> None:
    guarded = payment_tool(AsyncLocalAegis(finance_aegis.pipeline))
    with pytest.raises(TypeError, match="ainvoke"):
        guarded.invoke({"amount": 3, "currency": "USD"})


def test_content_and_artifact_tools_keep_their_artifact(finance_aegis: LocalAegis) -> None:
    @tool(response_format="content_and_artifact")
    def get_balance() -> tuple[str, dict[str, int]]:
        """Read the balance."""
        return "balance: 10", {"cents": 1000}

    guarded = guard_tool(
        get_balance,
        finance_aegis,
        name="stripe.get_balance",
        tenant="acme",
        agent_id="finance-agent",
    )
    message = guarded.invoke({"type": "tool_call", "id": "b", "name": "get_balance", "args": {}})
    assert (message.content, message.artifact) == ("balance: 10", {"cents": 1000})


def test_single_string_input_tools(slack_aegis: LocalAegis) -> None:
    inner = Tool(name="shout", func=lambda text: text.upper(), description="Shout.")
    recorder: list[ToolCall] = []

    class Recording:
        def decide(self, call: Any) -> Decision:
            recorder.append(call)
            return slack_aegis.decide(call)

        def decide_batch(self, calls: Any) -> list[Decision]:
            return slack_aegis.decide_batch(calls)

        def check(self, call: Any) -> Decision:
            return slack_aegis.check(call)

    guarded = guard_tool(inner, Recording(), tenant="acme", agent_id="status-bot")
    with pytest.raises(PolicyViolation):  # no rule allows "shout"
        guarded.invoke("hello")
    assert recorder[0].tool == "shout"
    assert recorder[0].params == {"tool_input": "hello"}


def test_guard_tools_maps_names_and_context(finance_aegis: LocalAegis) -> None:
    balance = StructuredTool.from_function(lambda: "10", name="get_balance", description="Balance.")
    pay = StructuredTool.from_function(create_payment)
    guarded = guard_tools(
        [balance, pay],
        finance_aegis,
        names={"get_balance": "stripe.get_balance", "create_payment": "stripe.create_payment"},
        kinds={"get_balance": "read"},
    )
    assert [g.aegis_tool for g in guarded] == ["stripe.get_balance", "stripe.create_payment"]
    with aegis_context(tenant="acme", agent_id="finance-agent"):
        assert guarded[0].invoke({}) == "10"
        assert guarded[1].invoke({"amount": 2, "currency": "GBP"}) == "paid 2 GBP"
    with aegis_context(tenant="acme", agent_id="planner"), pytest.raises(PolicyViolation):
        guarded[1].invoke({"amount": 2, "currency": "GBP"})


def test_over_http(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance, token=None)
    with AegisClient(server.url) as client:
        guarded = payment_tool(client)
        assert guarded.invoke({"amount": 10, "currency": "USD"}) == "paid 10 USD"
        with pytest.raises(ApprovalRequired):
            guarded.invoke({"amount": 10_000, "currency": "USD"})

    async def scenario() -> str:
        async with AsyncAegisClient(server.url) as aclient:
            result: str = await payment_tool(aclient).ainvoke({"amount": 10, "currency": "USD"})
            return result

    assert asyncio.run(scenario()) == "async paid 10 USD"


def test_bad_options_are_refused(finance_aegis: LocalAegis) -> None:
    inner = StructuredTool.from_function(create_payment)
    with pytest.raises(ValueError, match="on_violation"):
        guard_tool(inner, finance_aegis, on_violation="log")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        guard_tool(inner, finance_aegis, parent_chain="planner")


def test_the_sdk_works_without_langchain() -> None:
    # A fresh interpreter where langchain_core cannot be imported.
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "import aegis.sdk\n"
        "assert not any(m.startswith('langchain') for m in sys.modules if sys.modules[m])\n"
        "try:\n"
        "    import aegis.sdk.langchain\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "aegis.sdk.langchain needs langchain-core" in out.stdout
    assert "pip install" in out.stdout
