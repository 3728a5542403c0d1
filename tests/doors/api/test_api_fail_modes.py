"""DESIGN.md §6's fail-mode matrix at the decision API door, as Envoy tests it:

{core ok, raising, slow past its timeout, store down} x {a declared read tool
whose policy says ``fail_mode.read: open``, a write tool (always closed)}.

The API answers every case 200 with the fail mode's decision; the evidence
(counters, the JSON log line) records that the core could not decide.
"""

from __future__ import annotations

import io
import json

import pytest

from aegis.pipeline import PolicyStore
from aegis.policy import compile_text
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence
from aegis.testing.pipelines import FAILURES, pipeline_with

pytestmark = pytest.mark.anyio

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: fail-modes, tenant: acme, version: "fm-1"}
defaults: {fail_mode: {read: open}}
tools:
  - {name: db.query, kind: read}
  - {name: db.write, kind: write}
rules:
  - {id: reads, match: {tools: [db.query]}, effect: allow}
  - {id: writes, match: {tools: [db.write]}, effect: allow}
"""

TOOLS = {"read": "db.query", "write": "db.write"}


@pytest.mark.parametrize("failure", [None, *FAILURES], ids=["ok", *FAILURES])
@pytest.mark.parametrize("kind", ["read", "write"])
async def test_fail_mode_matrix(serve_api, failure: str | None, kind: str) -> None:
    store = PolicyStore(compile_text(POLICY))
    metrics = GatewayMetrics()
    log = io.StringIO()
    evidence = TelemetryEvidence(metrics=metrics, log=JsonLog(log), policy=store)
    pipeline = pipeline_with(store, failure, evidence=evidence, timeout=0.05)
    tool = TOOLS[kind]
    call = {"tenant": "acme", "agent_id": "a1", "tool": tool, "params": {}}

    async with serve_api(pipeline, metrics=metrics) as api:
        resp = await api.client.post("/v1/decide", json=call)
        metrics_text = (await api.client.get("/metrics")).text

    body = resp.json()
    assert resp.status_code == 200  # this door answers; the caller enforces
    assert resp.headers["x-aegis-decision-id"] == body["decision_id"]
    assert resp.headers["x-aegis-code"] == body["code"]
    assert resp.headers["x-aegis-policy-version"] == "fm-1"

    def count(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    (line,) = [json.loads(raw) for raw in log.getvalue().splitlines()]
    assert line["decision_id"] == body["decision_id"]
    assert line["door"] == "api" and line["tool"] == tool

    if failure is None:
        assert (body["outcome"], body["code"]) == ("allow", "decision.allowed")
        assert line["event"] == "decision"
        assert count("aegis_pipeline_errors_total", door="api", error="pipeline.timeout") == 0
        assert "aegis_pipeline_errors_total{" not in metrics_text
        assert "aegis_fail_open_total{" not in metrics_text
        return

    error = str(FAILURES[failure][1])
    assert count("aegis_pipeline_errors_total", door="api", error=error) == 1
    assert line["event"] == "decision.could_not_decide"
    assert line["level"] == "warning"
    assert line["error"] == error
    if kind == "read":
        assert (body["outcome"], body["code"]) == ("allow", "decision.fail_open")
        assert count("aegis_fail_open_total", door="api", error=error) == 1
        assert line["fail_mode"] == "open"
    else:
        assert (body["outcome"], body["code"]) == ("deny", "decision.fail_closed")
        assert count("aegis_fail_open_total", door="api", error=error) == 0
        assert line["fail_mode"] == "closed"
    assert error in body["reason"]
    assert count("aegis_decisions_total", outcome=body["outcome"], tool=tool, door="api") == 1
