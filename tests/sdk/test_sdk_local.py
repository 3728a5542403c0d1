"""LocalAegis and AsyncLocalAegis: the real pipeline in-process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sdk_standin import EXAMPLES, NOW

from aegis.core.call import ToolCall
from aegis.core.decision import Outcome
from aegis.errors import ErrorCode, PolicyLoadError
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy, compile_text
from aegis.sdk import (
    ApprovalRequired,
    AsyncLocalAegis,
    InvalidCall,
    LocalAegis,
    PolicyViolation,
    RateLimited,
)
from aegis.testing.pipelines import LimitedStage, pipeline_with

FINANCE = EXAMPLES / "finance-payments"


def pay(amount: object, agent: str = "finance-agent") -> ToolCall:
    params = {"amount": amount, "currency": "USD"}
    return ToolCall("acme", agent, "stripe.create_payment", params)  # type: ignore[arg-type]


@pytest.fixture
def local() -> Iterator[LocalAegis]:
    with LocalAegis(FINANCE, clock=lambda: NOW) as aegis:
        yield aegis


def test_outcomes(local: LocalAegis) -> None:
    assert local.decide(pay(120)).rule_ids == ("payments-small",)
    approval = local.decide(pay(9000))
    assert approval.outcome is Outcome.APPROVAL_NEEDED
    assert approval.approval_id == f"apr_{approval.decision_id}"
    deny = local.decide(pay(10, agent="planner"))
    assert (deny.outcome, deny.code) == (Outcome.DENY, ErrorCode.DECISION_DEFAULT_DENY)
    with pytest.raises(ApprovalRequired) as caught:
        local.check(pay(9000))
    assert caught.value.approval_id
    with pytest.raises(PolicyViolation):
        local.check(pay(-1))
    assert local.check(pay(1)).outcome is Outcome.ALLOW


def test_policy_sources(finance: CompiledPolicy) -> None:
    # A folder, a list of files, a compiled policy, a pipeline: the same answers.
    sources: list[object] = [
        FINANCE,
        str(FINANCE),
        [FINANCE / "policy.yaml"],
        finance,
        Pipeline.with_defaults(finance),
    ]
    for source in sources:
        with LocalAegis(source) as aegis:  # type: ignore[arg-type]
            assert aegis.decide(pay(120)).rule_ids == ("payments-small",)
            assert aegis.policy.bundle_hash == finance.bundle_hash


def test_a_policy_that_does_not_compile_raises() -> None:
    with pytest.raises(PolicyLoadError):
        LocalAegis(EXAMPLES / "no-such-folder")


def test_batch_and_invalid_calls(local: LocalAegis) -> None:
    decisions = local.decide_batch(
        [pay(1), pay(6000), {"tenant": "acme", "agent_id": "x", "tool": "y"}]
    )
    assert [d.outcome for d in decisions] == [Outcome.ALLOW, Outcome.APPROVAL_NEEDED, Outcome.DENY]
    with pytest.raises(InvalidCall) as caught:
        local.decide(pay(float("inf")))
    assert caught.value.code is ErrorCode.CALL_INVALID_NUMBER
    with pytest.raises(InvalidCall) as batch:
        local.decide_batch([pay(1), {"tenant": "acme"}])
    assert batch.value.path == "calls[1].agent_id"


def test_could_not_decide_uses_the_policys_fail_mode(finance: CompiledPolicy) -> None:
    # The finance policy does not let reads fail open: everything fails closed.
    with LocalAegis(pipeline_with(finance, "slow", timeout=0.05)) as aegis:
        decision = aegis.decide(ToolCall("acme", "finance-agent", "stripe.get_balance"))
    assert (decision.outcome, decision.code) == (Outcome.DENY, ErrorCode.DECISION_FAIL_CLOSED)
    policy = compile_text(
        """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: p, tenant: t}
defaults: {fail_mode: {read: open}}
tools: [{name: db.query, kind: read}]
rules: [{id: q, match: {tools: [db.query]}, effect: allow}]
"""
    )
    with LocalAegis(pipeline_with(policy, "store_down")) as aegis:
        decision = aegis.check(ToolCall("t", "a", "db.query"))
    assert decision.code is ErrorCode.DECISION_FAIL_OPEN


def test_limits_raise_rate_limited(finance: CompiledPolicy) -> None:
    pipeline = Pipeline.with_defaults(finance)
    pipeline.limits = LimitedStage(retry_after=4.0)
    with LocalAegis(pipeline) as aegis, pytest.raises(RateLimited) as caught:
        aegis.check(pay(1))
    assert caught.value.retry_after == 4.0


def test_reload_swaps_the_policy(local: LocalAegis) -> None:
    assert local.decide(pay(1)).outcome is Outcome.ALLOW
    old = local.reload(EXAMPLES / "slack-posting")
    assert old.sources != local.policy.sources
    assert local.decide(pay(1)).outcome is Outcome.DENY
    with pytest.raises(PolicyLoadError):
        local.reload(EXAMPLES / "nothing-here")
    assert local.decide(pay(1)).outcome is Outcome.DENY


def test_sync_mode_works_from_threads_and_inside_an_event_loop(local: LocalAegis) -> None:
    with ThreadPoolExecutor(8) as pool:
        outcomes = set(pool.map(lambda i: local.decide(pay(i + 1)).outcome, range(200)))
    assert outcomes == {Outcome.ALLOW}

    async def inside_a_loop() -> Outcome:
        return local.decide(pay(1)).outcome  # a sync tool called from async code

    assert asyncio.run(inside_a_loop()) is Outcome.ALLOW


def test_close_stops_the_loop_thread(finance: CompiledPolicy) -> None:
    aegis = LocalAegis(finance)
    aegis.decide(pay(1))
    names = {t.name for t in threading.enumerate()}
    assert "aegis-local" in names
    aegis.close()
    aegis.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        aegis.decide(pay(1))


def test_async_local(finance: CompiledPolicy) -> None:
    async def scenario() -> None:
        aegis = AsyncLocalAegis(finance, clock=lambda: NOW)
        assert (await aegis.decide(pay(120))).outcome is Outcome.ALLOW
        with pytest.raises(ApprovalRequired):
            await aegis.check(pay(9000))
        batch = await aegis.decide_batch([pay(1), pay(-1)])
        assert [d.outcome for d in batch] == [Outcome.ALLOW, Outcome.DENY]
        with pytest.raises(InvalidCall):
            await aegis.decide({"tenant": "acme", "agent_id": "a"})
        await aegis.aclose()

    asyncio.run(scenario())


def test_sync_and_async_modes_can_share_one_pipeline(finance: CompiledPolicy) -> None:
    with LocalAegis(finance) as sync_aegis:
        async_aegis = AsyncLocalAegis(sync_aegis.pipeline)
        assert async_aegis.pipeline is sync_aegis.pipeline
        sync_aegis.reload(EXAMPLES / "slack-posting")
        decision = asyncio.run(async_aegis.decide(pay(1)))
    assert decision.outcome is Outcome.DENY
