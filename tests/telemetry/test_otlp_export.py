"""``tracing.exporter: otlp``: the gateway's spans reach an OTLP/gRPC receiver, and
the span, the JSON log line, the audit record and the API answer of one decision
join on trace_id/span_id and decision_id.

The receiver (``otlp_receiver.py``) is an in-process ``TraceService/Export`` server
on 127.0.0.1 standing in for an OpenTelemetry Collector; nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2
from otlp_receiver import OtlpTraceReceiver, ReceivedSpan
from pydantic import ValidationError

import aegis
from aegis.audit.record import AuditRecord, RecordKind
from aegis.audit.sqlite_store import SqliteAuditStore
from aegis.server import build_gateway
from aegis.settings import AegisSettings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"

#: Calls against the example policies, one per outcome.
CALLS: dict[str, dict[str, Any]] = {
    "allow": {
        "tenant": "acme",
        "agent_id": "finance-agent",
        "tool": "stripe.create_payment",
        "params": {"amount": 100, "currency": "USD"},
    },
    "approval_needed": {
        "tenant": "acme",
        "agent_id": "finance-agent",
        "tool": "stripe.create_payment",
        "params": {"amount": 9000, "currency": "USD"},
    },
    "deny": {
        "tenant": "acme",
        "agent_id": "finance-agent",
        "tool": "stripe.refund_everything",
        "params": {},
    },
    "sanitize": {
        "tenant": "st-mary-hospital",
        "agent_id": "records-agent",
        "tool": "ehr.export_records",
        "destination": "https://warehouse.research.stmary.example/ingest",
        "params": {
            "records": [{"patient": {"ssn": "078-05-1120"}, "note": "dr.who@stmary.example"}]
        },
    },
}


@pytest.fixture
def receiver() -> Iterator[OtlpTraceReceiver]:
    r = OtlpTraceReceiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def otlp_settings(endpoint: str, tmp: Path, **otlp: Any) -> AegisSettings:
    return AegisSettings.model_validate(
        {
            "policy": {"paths": [str(ROOT / "examples")]},
            "audit": {
                "sqlite_path": str(tmp / "audit.db"),
                "signing_key_path": str(tmp / "audit-key.pem"),
            },
            "tracing": {
                "exporter": "otlp",
                "service_name": "aegis-under-test",
                "otlp": {"endpoint": endpoint, **otlp},
            },
            "api": {"port": 0},
            "envoy": {"enabled": False},
            "proxy": {"enabled": False},
            "shutdown_grace_seconds": 1,
        }
    )


async def decide_all(settings: AegisSettings, log: io.StringIO) -> dict[str, dict[str, Any]]:
    """Each of CALLS through the decision API (with a traceparent), then a clean stop."""
    gateway = build_gateway(settings, log_stream=log)
    ports = await gateway.start()
    answers = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:
            for outcome, call in CALLS.items():
                answer = (
                    await api.post("/v1/decide", json={**call, "traceparent": TRACEPARENT})
                ).json()
                assert answer["outcome"] == outcome, answer
                answers[outcome] = answer
            # One call without a trace context: the span is a root of a new trace.
            root = (await api.post("/v1/decide", json=CALLS["allow"])).json()
            answers["root"] = root
    finally:
        # No force_flush here: stop() shuts the provider down, and that must flush.
        await gateway.stop()
    return answers


def audit_records(path: Path) -> dict[str, dict[str, Any]]:
    """Decision records on disk, by decision id."""

    async def read() -> list[AuditRecord]:
        store = SqliteAuditStore(path)
        try:
            return [r async for r in store.records()]
        finally:
            await store.close()

    records = asyncio.run(read())
    return {r.body["decision_id"]: r.body for r in records if r.kind is RecordKind.DECISION}


def decision_lines(log: io.StringIO) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    return {line["decision_id"]: line for line in lines if line["event"] == "decision"}


def test_spans_reach_the_receiver_and_join_logs_and_audit(
    receiver: OtlpTraceReceiver, tmp_path: Path
) -> None:
    log = io.StringIO()
    settings = otlp_settings(
        f"127.0.0.1:{receiver.port}", tmp_path, headers={"x-aegis-tenant-group": "soc-eu"}
    )
    answers = asyncio.run(decide_all(settings, log))

    spans = receiver.wait_for_spans(len(answers), timeout=10)
    by_decision = {s.attributes["aegis.decision_id"]: s for s in spans}
    assert len(spans) == len(answers) == len(by_decision)
    lines = decision_lines(log)
    audit = audit_records(tmp_path / "audit.db")
    assert set(audit) == set(by_decision) == set(lines)

    for outcome in CALLS:
        answer = answers[outcome]
        span: ReceivedSpan = by_decision[answer["decision_id"]]
        # The agent's trace continues: same trace id, parented on the caller's span.
        assert span.trace_id == TRACE_ID
        assert span.parent_span_id == PARENT_SPAN_ID
        assert span.span_id not in {"", PARENT_SPAN_ID}
        assert span.name == "aegis.decision"
        assert span.kind == trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
        assert span.status_code == trace_pb2.Status.StatusCode.STATUS_CODE_UNSET
        attrs = span.attributes
        assert attrs["aegis.decision"] == outcome
        assert attrs["aegis.code"] == answer["code"]
        assert attrs["aegis.policy_version"] == answer["policy_version"]
        assert attrs["aegis.bundle_hash"] == answer["bundle_hash"]
        assert attrs["aegis.rule_ids"] == answer["rule_ids"]
        assert attrs["aegis.door"] == "api"
        assert attrs["aegis.tenant"] == CALLS[outcome]["tenant"]
        assert attrs["aegis.tool"] == CALLS[outcome]["tool"]
        assert isinstance(attrs["aegis.latency_us"], float)
        # The Resource and instrumentation scope name the service and its version.
        assert span.resource["service.name"] == "aegis-under-test"
        assert span.resource["service.version"] == aegis.__version__
        assert (span.scope_name, span.scope_version) == ("aegis", aegis.__version__)
        # The log line of the same decision carries the span's ids: the join.
        line = lines[answer["decision_id"]]
        assert (line["trace_id"], line["span_id"]) == (span.trace_id, span.span_id)
        assert line["outcome"] == outcome
        assert line["policy_version"] == attrs["aegis.policy_version"]
        # So does the audit record: span, log line and audit record join on these ids.
        record = audit[answer["decision_id"]]
        assert (record["trace_id"], record["span_id"]) == (span.trace_id, span.span_id)
        assert (record["outcome"], record["policy_version"]) == (outcome, line["policy_version"])

    assert (
        by_decision[answers["approval_needed"]["decision_id"]].attributes["aegis.approval_id"]
        == (answers["approval_needed"]["approval_id"])
    )
    sanitized = by_decision[answers["sanitize"]["decision_id"]].attributes
    assert sanitized["aegis.redacted_fields"] == [
        "records[0].note",
        "records[0].patient.ssn",
    ]
    assert "078-05-1120" not in json.dumps([s.attributes for s in spans])
    assert "078-05-1120" not in log.getvalue()
    assert "078-05-1120" not in json.dumps(audit[answers["sanitize"]["decision_id"]])

    root = by_decision[answers["root"]["decision_id"]]
    assert root.parent_span_id == "" and root.trace_id not in {"", TRACE_ID}
    assert lines[answers["root"]["decision_id"]]["trace_id"] == root.trace_id

    # The configured headers travel as gRPC metadata on every export.
    assert receiver.metadata and all(
        m.get("x-aegis-tenant-group") == "soc-eu" for m in receiver.metadata
    )


def test_an_unreachable_collector_never_changes_a_decision(tmp_path: Path) -> None:
    """Export is off the hot path: decisions are answered, and stop() is bounded by
    the export timeout, when nothing listens at the endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    log = io.StringIO()
    settings = otlp_settings(f"127.0.0.1:{port}", tmp_path, timeout_seconds=1)
    started = time.monotonic()
    answers = asyncio.run(decide_all(settings, log))
    assert time.monotonic() - started < 10
    assert {a["outcome"] for a in answers.values()} == set(CALLS)
    lines = decision_lines(log)
    # Ids are assigned when the span is made, not when it is exported: the log still joins.
    assert all(lines[a["decision_id"]]["trace_id"] for a in answers.values())


# -- settings ---------------------------------------------------------------------------


def test_otlp_settings_defaults_are_loopback() -> None:
    otlp = AegisSettings().tracing.otlp
    assert (otlp.endpoint, otlp.insecure, otlp.timeout_seconds, otlp.headers) == (
        "127.0.0.1:4317",
        True,
        10.0,
        {},
    )
    assert AegisSettings().tracing.exporter == "none"


def test_otlp_settings_from_a_file(tmp_path: Path) -> None:
    config = tmp_path / "aegis.yaml"
    config.write_text(
        "tracing:\n  exporter: otlp\n  otlp:\n    endpoint: http://127.0.0.1:14317\n"
        "    timeout_seconds: 2.5\n    headers: {authorization: Bearer x}\n"
    )
    tracing = load_settings(config).tracing
    assert tracing.exporter == "otlp"
    assert tracing.otlp.endpoint == "http://127.0.0.1:14317"
    assert tracing.otlp.timeout_seconds == 2.5
    assert tracing.otlp.headers == {"authorization": "Bearer x"}


@pytest.mark.parametrize(
    ("otlp", "where"),
    [
        ({"headers": {"Authorization": "x"}}, "tracing.otlp.headers"),  # gRPC keys: lower case
        ({"timeout_seconds": 0}, "tracing.otlp.timeout_seconds"),
        ({"endpoint": ""}, "tracing.otlp.endpoint"),
        ({"compression": "gzip"}, "tracing.otlp.compression"),  # unknown key
    ],
)
def test_bad_otlp_settings_are_refused(otlp: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        AegisSettings.model_validate({"tracing": {"exporter": "otlp", "otlp": otlp}})
    assert any(".".join(map(str, e["loc"])).startswith(where) for e in info.value.errors())


def test_bad_otlp_settings_in_a_file_are_located(tmp_path: Path) -> None:
    config = tmp_path / "aegis.yaml"
    config.write_text("tracing:\n  exporter: otlp\n  otlp:\n    timeout_seconds: -1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert [(str(d.code), d.line) for d in info.value.diagnostics] == [("config.invalid", 4)]
