"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import pytest

from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import CompiledPolicy
from aegis.telemetry import GatewayMetrics, TelemetryEvidence

pytestmark = pytest.mark.anyio


async def test_healthz(serve_api, examples_policy: CompiledPolicy) -> None:
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        resp = await api.client.get("/healthz")
        assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
        assert resp.headers["cache-control"] == "no-store"
        head = await api.client.head("/healthz")
        assert head.status_code == 200 and head.content == b""
        assert (await api.client.post("/healthz")).status_code == 405


async def test_readyz_follows_the_readiness_check(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    state = {"ready": False}

    def ready() -> bool:
        if state.get("raise"):
            raise RuntimeError("check failed")
        return state["ready"]

    async with serve_api(Pipeline.with_defaults(examples_policy), ready=ready) as api:
        resp = await api.client.get("/readyz")
        assert (resp.status_code, resp.json()) == (503, {"status": "not_ready"})
        state["ready"] = True
        resp = await api.client.get("/readyz")
        assert (resp.status_code, resp.json()) == (200, {"status": "ready"})
        state["raise"] = True
        assert (await api.client.get("/readyz")).status_code == 503


async def test_readyz_by_default_means_a_policy_is_loaded(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        assert (await api.client.get("/readyz")).status_code == 200


async def test_metrics_serves_the_registry(serve_api, examples_policy: CompiledPolicy) -> None:
    metrics = GatewayMetrics()
    store = PolicyStore(examples_policy)
    evidence = TelemetryEvidence(metrics=metrics, policy=store)
    pipeline = Pipeline.with_defaults(store, evidence=evidence)
    async with serve_api(pipeline, metrics=metrics) as api:
        call = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.get_balance"}
        assert (await api.client.post("/v1/decide", json=call)).status_code == 200
        assert (await api.client.post("/v1/decide", content=b"{}")).status_code == 415
        resp = await api.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert (
        'aegis_decisions_total{door="api",outcome="allow",tool="stripe.get_balance"} 1.0' in text
        or 'aegis_decisions_total{outcome="allow",tool="stripe.get_balance",door="api"} 1.0' in text
    )
    assert (
        'aegis_requests_refused_total{code="request.unsupported_media_type",door="api"} 1.0' in text
    )
    assert "aegis_decision_latency_seconds_bucket" in text


def test_public_api() -> None:
    from aegis.doors import api
    from aegis.http import router, server

    assert set(api.__all__) == {
        "DEFAULT_MAX_BATCH",
        "DOOR",
        "ApiLimits",
        "DecideHandlers",
        "build_api_router",
        "build_api_routes",
        "create_api_server",
        "openapi_document",
        "refusal_counter",
    }
    assert set(server.__all__) == {"HttpLimits", "HttpServer", "ServerStats", "error_response"}
    assert set(router.__all__) == {"Route", "Router"}
    for module in (api, server, router):
        for name in module.__all__:
            assert hasattr(module, name), name
