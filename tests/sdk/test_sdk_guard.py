"""@guard: tool functions run only when Aegis permits, with sanitized arguments."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
from sdk_standin import EXAMPLES, NOW, ServerFactory, free_port

from aegis.core.call import ToolCall
from aegis.core.decision import Decision
from aegis.errors import ErrorCode
from aegis.policy import CompiledPolicy, compile_text
from aegis.sdk import (
    AegisClient,
    AegisUnavailable,
    ApprovalRequired,
    AsyncAegisClient,
    AsyncLocalAegis,
    InvalidCall,
    LocalAegis,
    PolicyViolation,
    aegis_context,
    current_context,
    guard,
)

EMAIL_AND_CARD = "customer jane.doe@example.com paid with 4111 1111 1111 1111"
REDACTED = "customer [REDACTED:email] paid with [REDACTED:credit_card]"


class Recorder:
    """A sync Aegis that records the calls it is asked about, deciding with LocalAegis."""

    def __init__(self, inner: LocalAegis) -> None:
        self.inner = inner
        self.calls: list[ToolCall] = []

    def decide(self, call: Any) -> Decision:
        self.calls.append(call)
        return self.inner.decide(call)

    def decide_batch(self, calls: Any) -> list[Decision]:
        return self.inner.decide_batch(calls)

    def check(self, call: Any) -> Decision:
        return self.inner.check(call)


@pytest.fixture
def slack_aegis() -> Iterator[LocalAegis]:
    with LocalAegis(EXAMPLES / "slack-posting", clock=lambda: NOW) as aegis:
        yield aegis


@pytest.fixture
def finance_aegis() -> Iterator[LocalAegis]:
    with LocalAegis(EXAMPLES / "finance-payments", clock=lambda: NOW) as aegis:
        yield aegis


# -- sanitize rewrites the arguments ------------------------------------------------------


def test_sanitize_rewrites_arguments_sync(slack_aegis: LocalAegis) -> None:
    sent: list[tuple[str, str]] = []

    @guard(slack_aegis, tool="slack.post_message", tenant="acme", agent_id="status-bot")
    def post_message(channel: str, text: str) -> str:
        sent.append((channel, text))
        return "ok"

    assert post_message("#incidents", text=EMAIL_AND_CARD) == "ok"
    assert post_message("#eng-status", "deploy 42 finished") == "ok"
    assert sent == [("#incidents", REDACTED), ("#eng-status", "deploy 42 finished")]


def test_sanitize_rewrites_nested_and_tuple_arguments(slack_aegis: LocalAegis) -> None:
    seen: dict[str, Any] = {}

    @guard(slack_aegis, tool="slack.post_message", tenant="acme", agent_id="status-bot")
    def post_message(channel: str, text: str, blocks: tuple[dict[str, str], ...] = ()) -> None:
        seen.update(channel=channel, text=text, blocks=blocks)

    post_message("#soc-alerts", "leak found", blocks=({"text": "key AKIAIOSFODNN7EXAMPLE"},))
    assert seen["text"] == "leak found"
    assert seen["blocks"] == ({"text": "key [REDACTED:aws_access_key]"},)
    assert isinstance(seen["blocks"], tuple)


def test_sanitize_rewrites_arguments_async(slack_aegis: LocalAegis) -> None:
    async_aegis = AsyncLocalAegis(slack_aegis.pipeline)

    @guard(async_aegis, tool="slack.post_message", tenant="acme", agent_id="status-bot")
    async def post_message(channel: str, text: str) -> str:
        await asyncio.sleep(0)
        return text

    assert asyncio.run(post_message("#incidents", EMAIL_AND_CARD)) == REDACTED


def test_async_function_with_a_sync_aegis(slack_aegis: LocalAegis) -> None:
    @guard(slack_aegis, tool="slack.post_message", tenant="acme", agent_id="status-bot")
    async def post_message(channel: str, text: str) -> str:
        return text

    assert asyncio.run(post_message("#incidents", EMAIL_AND_CARD)) == REDACTED


def test_sanitize_over_http(serve: ServerFactory, slack: CompiledPolicy) -> None:
    server = serve(slack, token=None)

    with AegisClient(server.url) as client:

        @guard(client, tool="slack.post_message", tenant="acme", agent_id="status-bot")
        def post_message(channel: str, text: str) -> str:
            return text

        assert post_message("#incidents", EMAIL_AND_CARD) == REDACTED

    async def scenario() -> str:
        async with AsyncAegisClient(server.url) as aclient:

            @guard(aclient, tool="slack.post_message", tenant="acme", agent_id="status-bot")
            async def apost(channel: str, text: str) -> str:
                return text

            return await apost("#incidents", EMAIL_AND_CARD)

    assert asyncio.run(scenario()) == REDACTED


# -- approval and deny stop the function ----------------------------------------------------


def test_approval_needed_raises_with_the_approval_id(finance_aegis: LocalAegis) -> None:
    ran: list[float] = []

    @guard(finance_aegis, tool="stripe.create_payment", tenant="acme", agent_id="finance-agent")
    def create_payment(amount: float, currency: str, payee: str = "") -> str:
        ran.append(amount)
        return "paid"

    assert create_payment(120, "USD") == "paid"
    with pytest.raises(ApprovalRequired) as caught:
        create_payment(5000.01, "USD", payee="acct_1")
    assert caught.value.approval_id and caught.value.approval_id.startswith("apr_")
    assert caught.value.code is ErrorCode.DECISION_APPROVAL_REQUIRED
    assert caught.value.approval is not None and caught.value.approval.ttl_seconds == 1800
    assert ran == [120]


def test_deny_raises_policy_violation_with_code_and_decision_id(slack_aegis: LocalAegis) -> None:
    ran: list[str] = []

    @guard(slack_aegis, tool="slack.post_message", tenant="acme", agent_id="status-bot")
    async def post_message(channel: str, text: str) -> None:
        ran.append(channel)

    with pytest.raises(PolicyViolation) as caught:
        asyncio.run(post_message("#random", "hello"))
    exc = caught.value
    assert type(exc) is PolicyViolation
    assert exc.code is ErrorCode.DECISION_DENIED_BY_RULE
    assert exc.rule_ids == ("slack-channel-allowlist",)
    assert exc.decision_id and exc.reason == "agents post only to approved channels"
    assert ran == []


def test_unavailable_fails_closed_and_the_function_does_not_run() -> None:
    ran: list[int] = []
    with AegisClient(f"http://127.0.0.1:{free_port()}", timeout=0.5) as client:

        @guard(client, tool="stripe.create_payment", tenant="acme", agent_id="finance-agent")
        def create_payment(amount: int) -> None:
            ran.append(amount)

        with pytest.raises(AegisUnavailable):
            create_payment(1)
    assert ran == []


# -- how the call is built ---------------------------------------------------------------------


class Currency(Enum):
    USD = "USD"


def test_params_are_the_json_arguments_by_name(finance_aegis: LocalAegis) -> None:
    recorder = Recorder(finance_aegis)

    class Client:
        pass

    @guard(recorder, tool="stripe.create_payment", tenant="acme", agent_id="finance-agent")
    def create_payment(
        amount: float,
        currency: str = "USD",
        *tags: str,
        client: object = None,
        money: object = None,
        **metadata: Any,
    ) -> None:
        pass

    create_payment(10, "EUR", "a", "b", client=Client(), money=Currency.USD, note="n", data=b"x")
    (call,) = recorder.calls
    assert call.params == {
        "amount": 10,
        "currency": "EUR",
        "tags": ["a", "b"],
        "note": "n",
    }
    assert call.tool == "stripe.create_payment"
    create_payment(99)
    assert recorder.calls[1].params["currency"] == "USD"  # defaults are applied


def test_self_is_not_a_param_and_exclude_drops_names(finance_aegis: LocalAegis) -> None:
    recorder = Recorder(finance_aegis)

    class Payments:
        @guard(
            recorder,
            tool="stripe.create_payment",
            tenant="acme",
            agent_id="finance-agent",
            exclude={"idempotency_key"},
        )
        def create(self, amount: int, currency: str, idempotency_key: str = "") -> str:
            return f"{amount} {currency}"

    assert Payments().create(5, "GBP", idempotency_key="k-1") == "5 GBP"
    assert recorder.calls[0].params == {"amount": 5, "currency": "GBP"}
    with pytest.raises(ValueError, match="exclude"):
        guard(recorder, tool="x", exclude={"nope"})(lambda a: a)


def test_tool_name_defaults_to_the_function_name(finance_aegis: LocalAegis) -> None:
    recorder = Recorder(finance_aegis)

    @guard(recorder, tenant="acme", agent_id="finance-agent", kind="read")
    def lookup(q: str) -> str:
        return q

    with pytest.raises(PolicyViolation):  # default deny: no rule names this tool
        lookup("x")
    assert recorder.calls[0].tool == "lookup"
    assert str(recorder.calls[0].kind) == "read"
    assert lookup.__name__ == "lookup" and lookup.__wrapped__  # type: ignore[attr-defined]


def test_wrong_arguments_raise_type_error_before_deciding(finance_aegis: LocalAegis) -> None:
    recorder = Recorder(finance_aegis)

    @guard(recorder, tool="t", tenant="acme", agent_id="a")
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError):
        f(1, 2)  # type: ignore[call-arg]
    assert recorder.calls == []


def test_refused_values_are_never_dropped(finance_aegis: LocalAegis) -> None:
    @guard(finance_aegis, tool="stripe.create_payment", tenant="acme", agent_id="finance-agent")
    def create_payment(amount: float, currency: str) -> None:
        raise AssertionError("must not run")

    with pytest.raises(InvalidCall) as caught:
        create_payment(float("nan"), "USD")
    assert caught.value.code is ErrorCode.CALL_INVALID_NUMBER
    deep: Any = []
    deep.append(deep)  # a cycle
    with pytest.raises(InvalidCall) as cyclic:
        create_payment(deep, "USD")
    assert cyclic.value.code is ErrorCode.CALL_TOO_DEEP


# -- who is calling ---------------------------------------------------------------------------


def test_caller_from_the_context(finance_aegis: LocalAegis) -> None:
    recorder = Recorder(finance_aegis)

    @guard(recorder, tool="stripe.create_payment")
    def create_payment(amount: int, currency: str) -> str:
        return "paid"

    with pytest.raises(InvalidCall, match="aegis_context") as caught:
        create_payment(1, "USD")
    assert caught.value.code is ErrorCode.CALL_MISSING_FIELD

    with aegis_context(tenant="acme", agent_id="finance-agent", parent_chain=["planner"]):
        assert create_payment(1, "USD") == "paid"
        with aegis_context(agent_id="planner", session_id="s-1"), pytest.raises(PolicyViolation):
            create_payment(1, "USD")  # the planner may not pay
        assert current_context().agent_id == "finance-agent"
    assert current_context().tenant is None
    first, second = recorder.calls
    assert (first.tenant, first.agent_id, first.parent_chain) == (
        "acme",
        "finance-agent",
        ("planner",),
    )
    assert (second.agent_id, second.session_id, second.parent_chain) == (
        "planner",
        "s-1",
        ("planner",),
    )


def test_decorator_arguments_win_over_the_context(finance_aegis: LocalAegis) -> None:
    recorder = Recorder(finance_aegis)

    @guard(recorder, tool="stripe.create_payment", tenant="acme", agent_id="finance-agent")
    def create_payment(amount: int, currency: str) -> str:
        return "paid"

    with aegis_context(tenant="globex", agent_id="planner", agent_labels=["finance"]):
        assert create_payment(1, "USD") == "paid"
    call = recorder.calls[0]
    assert (call.tenant, call.agent_id, call.agent_labels) == (
        "acme",
        "finance-agent",
        frozenset({"finance"}),
    )


def test_context_follows_asyncio_tasks(finance_aegis: LocalAegis) -> None:
    @guard(AsyncLocalAegis(finance_aegis.pipeline), tool="stripe.create_payment")
    async def create_payment(amount: int, currency: str) -> str:
        return "paid"

    async def as_agent(agent: str) -> str:
        with aegis_context(tenant="acme", agent_id=agent):
            await asyncio.sleep(0)
            try:
                return await create_payment(1, "USD")
            except PolicyViolation as exc:
                return str(exc.code)

    async def both() -> list[str]:
        return list(await asyncio.gather(as_agent("finance-agent"), as_agent("planner")))

    assert asyncio.run(both()) == ["paid", "decision.default_deny"]


def test_sync_function_refuses_an_async_aegis(finance_aegis: LocalAegis) -> None:
    async_aegis = AsyncLocalAegis(finance_aegis.pipeline)
    with pytest.raises(TypeError, match="sync function"):

        @guard(async_aegis, tool="t")
        def f() -> None:
            pass


def test_string_where_a_list_belongs_is_refused(finance_aegis: LocalAegis) -> None:
    with pytest.raises(TypeError):
        guard(finance_aegis, tool="t", parent_chain="planner")
    with pytest.raises(TypeError), aegis_context(parent_chain="planner"):
        pass


def test_compiled_policy_with_labels(finance_aegis: LocalAegis) -> None:
    policy = compile_text(
        """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: p, tenant: t}
rules:
  - {id: finance-only, match: {tools: [ledger.read], labels: [finance]}, effect: allow}
"""
    )
    with LocalAegis(policy) as aegis:

        @guard(aegis, tool="ledger.read", tenant="t", agent_id="a", agent_labels=["finance"])
        def read() -> str:
            return "rows"

        @guard(aegis, tool="ledger.read", tenant="t", agent_id="a")
        def read_unlabelled() -> str:
            return "rows"

        assert read() == "rows"
        with pytest.raises(PolicyViolation):
            read_unlabelled()
