"""POST /v1/decide/batch: each call answered on its own, in order, within a bounded size."""

from __future__ import annotations

import time

import pytest

from aegis.doors.api import DEFAULT_MAX_BATCH, ApiLimits
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy
from aegis.testing.pipelines import pipeline_with

pytestmark = pytest.mark.anyio

PAY = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.create_payment"}


async def test_mixed_batch_answers_each_item_in_order(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    calls = [
        {**PAY, "params": {"amount": 10, "currency": "USD"}},
        {"agent_id": "x", "tool": "y"},  # no tenant
        {**PAY, "params": {"amount": 9000, "currency": "USD"}},
        "not a call",
        {**PAY, "agent_id": "planner", "params": {"amount": 10, "currency": "USD"}},
        {**PAY, "bogus": 1},
    ]
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        resp = await api.client.post("/v1/decide/batch", json={"calls": calls})
        assert resp.status_code == 200
        results = resp.json()["results"]
        assert [r["index"] for r in results] == list(range(len(calls)))
        summary = [
            r["decision"]["outcome"] if "decision" in r else r["error"]["code"] for r in results
        ]
        assert summary == [
            "allow",
            "call.missing_field",
            "approval_needed",
            "call.not_an_object",
            "deny",
            "call.unknown_field",
        ]
        assert results[1]["error"] == {
            "type": "CallError",
            "code": "call.missing_field",
            "message": "tenant is required",
            "path": "tenant",
        }
        ids = {r["decision"]["decision_id"] for r in results if "decision" in r}
        assert len(ids) == 3  # one decision each
        assert "x-aegis-decision-id" not in resp.headers  # many decisions: no single id
        assert api.refused("call.missing_field") == 1
        assert api.refused("call.not_an_object") == 1


async def test_empty_batch(serve_api, examples_policy: CompiledPolicy) -> None:
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        resp = await api.client.post("/v1/decide/batch", json={"calls": []})
    assert (resp.status_code, resp.json()) == (200, {"results": []})


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ([], 400, "request.malformed", ""),
        ({}, 400, "request.malformed", "calls"),
        ({"calls": {}}, 400, "request.malformed", "calls"),
        ({"calls": [], "more": 1}, 400, "request.malformed", "more"),
        ({"calls": [PAY] * 4}, 413, "request.too_large", "calls"),
    ],
    ids=["not-an-object", "no-calls", "calls-not-a-list", "unknown-field", "too-many"],
)
async def test_bad_batches(
    serve_api, examples_policy: CompiledPolicy, body: object, status: int, code: str, path: str
) -> None:
    async with serve_api(
        Pipeline.with_defaults(examples_policy), limits=ApiLimits(max_batch=3)
    ) as api:
        resp = await api.client.post("/v1/decide/batch", json=body)
        assert resp.status_code == status
        assert resp.json()["error"] == {
            "type": "RequestError",
            "code": code,
            "message": resp.json()["error"]["message"],
            "path": path,
        }
        assert api.refused(code) == 1


async def test_the_default_maximum_is_accepted(serve_api, examples_policy: CompiledPolicy) -> None:
    calls = [
        {**PAY, "params": {"amount": i + 1, "currency": "EUR"}} for i in range(DEFAULT_MAX_BATCH)
    ]
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        resp = await api.client.post("/v1/decide/batch", json={"calls": calls})
        assert resp.status_code == 200
        assert len(resp.json()["results"]) == DEFAULT_MAX_BATCH
        over = await api.client.post("/v1/decide/batch", json={"calls": [*calls, calls[0]]})
        assert over.status_code == 413


async def test_a_slow_stage_costs_a_batch_one_timeout_not_one_per_call(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    pipeline = pipeline_with(examples_policy, "slow", timeout=0.2)
    calls = [{**PAY, "params": {"amount": 1, "currency": "USD"}}] * 20
    async with serve_api(pipeline) as api:
        started = time.monotonic()
        resp = await api.client.post("/v1/decide/batch", json={"calls": calls})
        elapsed = time.monotonic() - started
    assert resp.status_code == 200
    codes = {r["decision"]["code"] for r in resp.json()["results"]}
    assert codes == {"decision.fail_closed"}  # a write tool: fails closed
    assert elapsed < 2.0  # 20 sequential timeouts would take 4 s
