"""AegisClient and AsyncAegisClient against a real HTTP server in front of the pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import pytest
from sdk_standin import NOW, ServerFactory, canned, free_port

from aegis.core.call import ToolCall, ToolKind
from aegis.core.decision import ApprovalRequirement, Outcome, Redaction
from aegis.errors import CallError, ErrorCode
from aegis.http import HttpResponse
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy, compile_text
from aegis.sdk import (
    AegisClient,
    AegisRequestError,
    AegisTimeout,
    AegisUnavailable,
    ApprovalRequired,
    AsyncAegisClient,
    FailOpenEvent,
    InvalidCall,
    PolicyViolation,
    ProtocolError,
    RateLimited,
)
from aegis.testing.pipelines import LimitedStage

TOKEN = "test-token"


def pay(amount: object, agent: str = "finance-agent", **extra: object) -> ToolCall:
    params = {"amount": amount, "currency": "USD", **extra}
    return ToolCall("acme", agent, "stripe.create_payment", params)  # type: ignore[arg-type]


def post(channel: str, text: str) -> ToolCall:
    return ToolCall("acme", "status-bot", "slack.post_message", {"channel": channel, "text": text})


# -- every outcome --------------------------------------------------------------------


def test_allow(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance)
    with AegisClient(server.url, token=TOKEN) as client:
        decision = client.decide(pay(120))
    assert decision.outcome is Outcome.ALLOW
    assert decision.code is ErrorCode.DECISION_ALLOWED
    assert decision.rule_ids == ("payments-small",)
    assert decision.policy_version == finance.version
    assert decision.bundle_hash == finance.bundle_hash
    assert decision.decision_id and decision.approval_id is None
    # The request was the ToolCall JSON with the bearer token.
    (request,) = server.received
    assert (request.method, request.path) == ("POST", "/v1/decide")
    assert request.header("authorization") == f"Bearer {TOKEN}"
    assert request.header("content-type") == "application/json"


def test_approval_needed_carries_the_ticket(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance)
    with AegisClient(server.url, token=TOKEN) as client:
        decision = client.decide(pay(5000.01))
        assert decision.outcome is Outcome.APPROVAL_NEEDED
        assert decision.approval == ApprovalRequirement(
            "payments-desk", "slack:#payments-approvals", 1800, "payments-large-approval"
        )
        assert decision.approval_id and decision.decision_id in decision.approval_id
        with pytest.raises(ApprovalRequired) as caught:
            client.check(pay(9000))
    exc = caught.value
    assert exc.code is ErrorCode.DECISION_APPROVAL_REQUIRED
    assert exc.approval_id and exc.approval_id == exc.decision.approval_id
    assert exc.approval is not None and exc.approval.group == "payments-desk"
    assert exc.rule_ids == ("payments-large-approval",)


def test_deny(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance)
    with AegisClient(server.url, token=TOKEN) as client:
        decision = client.decide(pay("100"))
        assert decision.outcome is Outcome.DENY
        assert decision.code is ErrorCode.DECISION_DEFAULT_DENY
        with pytest.raises(PolicyViolation) as caught:
            client.check(pay(10, agent="planner"))
    exc = caught.value
    assert type(exc) is PolicyViolation
    assert exc.code is ErrorCode.DECISION_DEFAULT_DENY
    assert exc.outcome is Outcome.DENY
    assert exc.decision_id and exc.policy_version == finance.version
    assert exc.to_dict()["error"]["decision_id"] == exc.decision_id
    assert exc.decision_id in str(exc)


def test_sanitize_with_redactions(serve: ServerFactory, slack: CompiledPolicy) -> None:
    server = serve(slack)
    with AegisClient(server.url, token=TOKEN) as client:
        decision = client.check(post("#incidents", "jane.doe@example.com paid 4111 1111 1111 1111"))
    assert decision.outcome is Outcome.SANITIZE
    assert decision.redactions == (
        Redaction("text", "credit_card"),
        Redaction("text", "email"),
    )
    assert decision.sanitized_params == {
        "channel": "#incidents",
        "text": "[REDACTED:email] paid [REDACTED:credit_card]",
    }


def test_rate_limited(serve: ServerFactory, finance: CompiledPolicy) -> None:
    pipeline = Pipeline.with_defaults(finance, clock=lambda: NOW)
    pipeline.limits = LimitedStage(retry_after=12.5)
    server = serve(pipeline)
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(RateLimited) as caught:
        client.check(pay(10))
    assert caught.value.retry_after == 12.5
    assert caught.value.code is ErrorCode.DECISION_LIMIT_EXCEEDED
    assert isinstance(caught.value, PolicyViolation)


def test_pipeline_failure_is_the_servers_fail_closed_decision(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    # The service could decide "could not decide": that is a 200 decision, not an outage.
    from aegis.testing.pipelines import pipeline_with

    server = serve(pipeline_with(finance, "store_down"))
    with AegisClient(server.url, token=TOKEN) as client:
        decision = client.decide(pay(10))
    assert decision.outcome is Outcome.DENY
    assert decision.code is ErrorCode.DECISION_FAIL_CLOSED


def test_batch_in_call_order(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance)
    calls = [pay(120), pay(9000), pay(-1), ToolCall("acme", "finance-agent", "stripe.get_balance")]
    with AegisClient(server.url, token=TOKEN) as client:
        decisions = client.decide_batch(calls)
        assert client.decide_batch([]) == []
    assert [d.outcome for d in decisions] == [
        Outcome.ALLOW,
        Outcome.APPROVAL_NEEDED,
        Outcome.DENY,
        Outcome.ALLOW,
    ]
    assert decisions[1].approval_id
    (request,) = server.received
    assert request.path == "/v1/decide/batch"


DECIDED = {"outcome": "allow", "decision_id": "d"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"results": [{"index": 0, "decision": DECIDED}]}, ProtocolError),  # one for two
        ({"decisions": [DECIDED, DECIDED]}, ProtocolError),
        (
            {"results": [{"index": 1, "decision": DECIDED}, {"index": 0, "decision": DECIDED}]},
            ProtocolError,
        ),
        ({"results": [{"index": 0, "decision": DECIDED}, {"index": 1}]}, ProtocolError),
        (
            {
                "results": [
                    {"index": 0, "decision": DECIDED},
                    {
                        "index": 1,
                        "error": {
                            "type": "CallError",
                            "code": "call.too_large",
                            "message": "big",
                            "path": "params",
                        },
                    },
                ]
            },
            InvalidCall,
        ),
    ],
)
def test_batch_answers_are_read_strictly(
    serve: ServerFactory, finance: CompiledPolicy, body: object, error: type[Exception]
) -> None:
    server = serve(finance, canned=canned(200, body))
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(error) as caught:
        client.decide_batch([pay(1), pay(2)])
    if isinstance(caught.value, InvalidCall):
        assert (caught.value.path, caught.value.code) == (
            "calls[1].params",
            ErrorCode.CALL_TOO_LARGE,
        )


def test_calls_may_be_given_as_json_data(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance)
    data = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.get_balance"}
    with AegisClient(server.url, token=TOKEN) as client:
        assert client.decide(data).rule_ids == ("payments-balance-read",)


# -- refused requests -------------------------------------------------------------------


def test_malformed_call_is_refused_before_sending(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    server = serve(finance)
    with AegisClient(server.url, token=TOKEN) as client:
        with pytest.raises(InvalidCall) as caught:
            client.decide(pay(float("nan")))
        assert caught.value.code is ErrorCode.CALL_INVALID_NUMBER
        assert caught.value.path == "params.amount"
        assert caught.value.status is None
        with pytest.raises(CallError, match="tenant"):  # InvalidCall is a CallError
            client.decide({"agent_id": "a", "tool": "t"})
        with pytest.raises(InvalidCall) as batch:
            client.decide_batch([pay(1), pay(1, agent="")])
        assert batch.value.path == "calls[1].agent_id"
    assert server.received == []


def test_a_400_from_the_service_is_invalid_call(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    body = {"error": {"code": "call.invalid_value", "message": "nope", "path": "params.x"}}
    server = serve(finance, canned=canned(400, body))
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(InvalidCall) as caught:
        client.decide(pay(1))
    assert (caught.value.code, caught.value.path, caught.value.status) == (
        ErrorCode.CALL_INVALID_VALUE,
        "params.x",
        400,
    )


def test_a_400_request_error_is_not_a_call_error(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    body = {"error": {"code": "request.too_large", "message": "too big", "path": ""}}
    server = serve(finance, canned=canned(400, body))
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(AegisRequestError) as caught:
        client.decide(pay(1))
    assert not isinstance(caught.value, CallError)
    assert caught.value.code is ErrorCode.REQUEST_TOO_LARGE


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, ErrorCode.IDENTITY_MISSING), ("wrong", ErrorCode.IDENTITY_INVALID)],
)
def test_bad_token(
    serve: ServerFactory, finance: CompiledPolicy, token: str | None, code: ErrorCode
) -> None:
    server = serve(finance)
    with AegisClient(server.url, token=token) as client, pytest.raises(AegisRequestError) as caught:
        client.decide(pay(1))
    assert caught.value.status == 401
    assert caught.value.code is code


def test_token_may_be_a_function_called_per_request(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    server = serve(finance)
    tokens = iter([TOKEN, "rotated-away"])
    with AegisClient(server.url, token=lambda: next(tokens)) as client:
        assert client.decide(pay(1)).outcome is Outcome.ALLOW
        with pytest.raises(AegisRequestError):
            client.decide(pay(1))


def test_unknown_code_from_a_newer_server_is_kept(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    body = {
        "decision_id": "d-1",
        "outcome": "deny",
        "code": "decision.something_new",
        "reason": "newer",
        "rule_ids": [],
        "policy_version": "v9",
        "bundle_hash": "h",
        "future_field": {"ignored": True},
    }
    server = serve(finance, canned=canned(200, body))
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(PolicyViolation) as caught:
        client.check(pay(1))
    assert caught.value.code == "decision.something_new"
    assert caught.value.decision_id == "d-1"


# -- could not decide: fail closed unless a read tool is explicitly let open -------------


UNREADABLE = [
    pytest.param(canned(500, {"error": {"code": "pipeline.internal_error"}}), id="500"),
    pytest.param(canned(503, b"<html>busy</html>"), id="503-html"),
    pytest.param(canned(429, b""), id="429-proxy-throttle"),
    pytest.param(canned(200, b"not json"), id="200-not-json"),
    pytest.param(canned(200, {"outcome": "maybe", "decision_id": "x"}), id="unknown-outcome"),
    pytest.param(canned(200, {"outcome": "allow"}), id="no-decision-id"),
    pytest.param(canned(200, {"outcome": "sanitize", "decision_id": "x"}), id="sanitize-no-params"),
    pytest.param(canned(200, [1, 2]), id="not-an-object"),
]


@pytest.mark.parametrize("answer", UNREADABLE)
def test_unreadable_answers_fail_closed(
    serve: ServerFactory, finance: CompiledPolicy, answer: object
) -> None:
    server = serve(finance, canned=answer)
    with AegisClient(server.url, token=TOKEN) as client:
        with pytest.raises(AegisUnavailable) as caught:
            client.decide(pay(1))
        assert not isinstance(caught.value, PolicyViolation)
        assert client.fail_open_count == 0


def test_unknown_outcome_is_a_protocol_error(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance, canned=canned(200, {"outcome": "maybe", "decision_id": "x"}))
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(ProtocolError):
        client.decide(pay(1))


def test_slow_server_times_out(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance, delay=2.0)
    with AegisClient(server.url, token=TOKEN, timeout=0.2) as client:
        start = time.monotonic()
        with pytest.raises(AegisTimeout) as caught:
            client.decide(pay(1))
        assert time.monotonic() - start < 1.5
    assert caught.value.code is ErrorCode.PIPELINE_TIMEOUT
    assert isinstance(caught.value, AegisUnavailable)


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AegisClient(url, token=TOKEN) as client, pytest.raises(AegisUnavailable) as caught:
        client.decide(pay(1))
    assert caught.value.code is ErrorCode.REQUEST_UPSTREAM_FAILED
    assert "127.0.0.1" in str(caught.value)


BALANCE = ToolCall("acme", "finance-agent", "stripe.get_balance")


def test_fail_open_only_for_listed_read_tools(caplog: pytest.LogCaptureFixture) -> None:
    events: list[FailOpenEvent] = []
    url = f"http://127.0.0.1:{free_port()}"
    client = AegisClient(
        url, token=TOKEN, fail_open_reads=["stripe.get_*"], on_fail_open=events.append
    )
    with client, caplog.at_level(logging.WARNING, logger="aegis.sdk"):
        decision = client.check(BALANCE)
        assert decision.outcome is Outcome.ALLOW
        assert decision.code is ErrorCode.DECISION_FAIL_OPEN
        assert decision.decision_id
        assert client.fail_open_count == 1
        # A write tool is not listed: closed.
        with pytest.raises(AegisUnavailable):
            client.decide(pay(1))
        # A listed name whose call says it writes: closed.
        with pytest.raises(AegisUnavailable):
            client.decide(ToolCall("acme", "a", "stripe.get_balance", kind=ToolKind.WRITE))
        assert client.fail_open_count == 1
    (event,) = events
    assert event.call.tool == "stripe.get_balance" and event.decision == decision
    assert event.error.code is ErrorCode.REQUEST_UPSTREAM_FAILED
    assert any(
        decision.decision_id == getattr(r, "aegis_decision_id", None) for r in caplog.records
    )


def test_fail_open_is_off_by_default() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AegisClient(url) as client, pytest.raises(AegisUnavailable):
        client.decide(BALANCE)


def test_fail_open_covers_timeouts_and_5xx(serve: ServerFactory, finance: CompiledPolicy) -> None:
    slow = serve(finance, delay=2.0)
    broken = serve(finance, canned=canned(502, b""))
    for url in (slow.url, broken.url):
        with AegisClient(url, timeout=0.2, fail_open_reads=["stripe.get_balance"]) as client:
            assert client.decide(BALANCE).code is ErrorCode.DECISION_FAIL_OPEN


def test_fail_open_never_covers_refused_requests(
    serve: ServerFactory, finance: CompiledPolicy
) -> None:
    server = serve(finance)
    with AegisClient(server.url, token="wrong", fail_open_reads=["*"]) as client:
        with pytest.raises(AegisRequestError):
            client.decide(BALANCE)
        with pytest.raises(InvalidCall):
            client.decide({"tenant": "acme", "agent_id": "a", "tool": "x", "params": []})


def test_a_raising_hook_fails_closed() -> None:
    def hook(event: FailOpenEvent) -> None:
        raise RuntimeError("audit store down")

    url = f"http://127.0.0.1:{free_port()}"
    with (
        AegisClient(url, fail_open_reads=["stripe.get_balance"], on_fail_open=hook) as client,
        pytest.raises(RuntimeError, match="audit store down"),
    ):
        client.decide(BALANCE)


def test_batch_fails_open_only_as_a_whole() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AegisClient(url, fail_open_reads=["stripe.get_balance"]) as client:
        decisions = client.decide_batch([BALANCE, BALANCE])
        assert [d.code for d in decisions] == [ErrorCode.DECISION_FAIL_OPEN] * 2
        with pytest.raises(AegisUnavailable):
            client.decide_batch([BALANCE, pay(1)])
        assert client.fail_open_count == 2


def test_fail_open_reads_must_be_a_collection() -> None:
    with pytest.raises(TypeError):
        AegisClient("http://127.0.0.1:1", fail_open_reads="stripe.get_balance")


# -- the async client ---------------------------------------------------------------------


def run(coro_fn: Callable[[], object]) -> object:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def test_async_client_outcomes_and_batch(
    serve: ServerFactory, finance: CompiledPolicy, slack: CompiledPolicy
) -> None:
    fin, sl = serve(finance), serve(slack)

    async def scenario() -> None:
        async with AsyncAegisClient(fin.url, token=TOKEN) as client:
            assert (await client.decide(pay(120))).outcome is Outcome.ALLOW
            with pytest.raises(ApprovalRequired) as caught:
                await client.check(pay(6000))
            assert caught.value.approval_id
            with pytest.raises(PolicyViolation):
                await client.check(pay(-5))
            batch = await client.decide_batch([pay(1), pay(6000)])
            assert [d.outcome for d in batch] == [Outcome.ALLOW, Outcome.APPROVAL_NEEDED]
            # Concurrent calls share one connection pool.
            many = await asyncio.gather(*(client.decide(pay(i + 1)) for i in range(20)))
            assert {d.outcome for d in many} == {Outcome.ALLOW}
        async with AsyncAegisClient(sl.url, token=TOKEN) as client:
            d = await client.check(post("#eng-status", "ping +1 212 555 0100"))
            assert d.outcome is Outcome.SANITIZE and d.redactions

    run(scenario)


def test_async_client_errors_and_fail_modes(serve: ServerFactory, finance: CompiledPolicy) -> None:
    slow = serve(finance, delay=2.0)
    refused = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with AsyncAegisClient(slow.url, token=TOKEN, timeout=0.2) as client:
            with pytest.raises(AegisTimeout):
                await client.decide(pay(1))
        async with AsyncAegisClient(refused, fail_open_reads=["stripe.get_balance"]) as client:
            with pytest.raises(AegisUnavailable):
                await client.decide(pay(1))
            assert (await client.decide(BALANCE)).code is ErrorCode.DECISION_FAIL_OPEN
            assert [d.code for d in await client.decide_batch([BALANCE])] == [
                ErrorCode.DECISION_FAIL_OPEN
            ]
            assert client.fail_open_count == 2
            with pytest.raises(InvalidCall):
                await client.decide_batch([{"tenant": "acme"}])

    run(scenario)


def test_base_url_path_prefix_is_kept() -> None:
    # A gateway mounted under a prefix: the client posts below it.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(404, json={"error": {"code": "request.not_found"}})

    transport = httpx.MockTransport(handler)
    with (
        AegisClient("http://gw.invalid/aegis", transport=transport) as client,
        pytest.raises(AegisRequestError),
    ):
        client.decide(pay(1))
    assert seen == ["/aegis/v1/decide"]


def test_redirects_are_not_followed(serve: ServerFactory, finance: CompiledPolicy) -> None:
    server = serve(finance, canned=HttpResponse(307, (("location", "http://127.0.0.1:9/x"),)))
    with AegisClient(server.url, token=TOKEN) as client, pytest.raises(AegisRequestError) as caught:
        client.decide(pay(1))
    assert caught.value.status == 307
    assert len(server.received) == 1


def test_compile_text_policy_over_http(serve: ServerFactory) -> None:
    policy = compile_text(
        """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: p, tenant: t}
rules:
  - {id: all, match: {tools: [x]}, effect: allow}
"""
    )
    server = serve(policy, token=None)
    with AegisClient(server.url) as client:
        assert client.decide(ToolCall("t", "a", "x")).rule_ids == ("all",)
        assert "authorization" not in dict(server.received[0].headers)
