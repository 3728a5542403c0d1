"""The pipeline: stage order, refusals, approvals, and fail modes around the core."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aegis.core.call import ToolCall, parse_call
from aegis.core.decision import Outcome
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline, PolicyStore, Refusal, RequestContext, StoreUnavailableError
from aegis.policy import CompiledPolicy, compile_text
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: p, tenant: acme, version: "v1"}
defaults: {fail_mode: {read: open}}
tools:
  - {name: db.query, kind: read}
  - {name: db.write, kind: write}
rules:
  - {id: reads, match: {tools: [db.query]}, effect: allow}
  - {id: writes, match: {tools: [db.write]}, when: [{param: n, lte: 10}], effect: allow}
  - id: big-writes
    match: {tools: [db.write]}
    when: [{param: n, gt: 10}]
    effect: approval_needed
    approval: {group: dba, ttl: 5m}
"""
CTX = RequestContext(door="test")


def call(tool: str, **params: object) -> ToolCall:
    return parse_call(
        {
            "tenant": "acme",
            "agent_id": "a1",
            "tool": tool,
            "params": params,
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        }
    )


@dataclass
class Rig:
    pipeline: Pipeline
    spans: InMemorySpanExporter
    metrics: GatewayMetrics
    log: io.StringIO
    policy: CompiledPolicy = field(default_factory=lambda: compile_text(POLICY))

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@pytest.fixture
def rig() -> Rig:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = GatewayMetrics()
    stream = io.StringIO()
    policy = compile_text(POLICY)
    store = PolicyStore(policy)
    evidence = TelemetryEvidence(
        tracer=provider.get_tracer("aegis"), metrics=metrics, log=JsonLog(stream), policy=store
    )
    return Rig(
        Pipeline.with_defaults(store, evidence=evidence, timeout=0.05),
        exporter,
        metrics,
        stream,
        policy,
    )


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_decision_leaves_span_metric_and_log(rig: Rig) -> None:
    result = asyncio.run(rig.pipeline.decide(call("db.write", n=3), CTX))
    d = result.decision
    assert (d.outcome, d.rule_ids, result.error) == (Outcome.ALLOW, ("writes",), None)
    (span,) = rig.spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["aegis.decision"] == "allow"
    assert attrs["aegis.decision_id"] == d.decision_id
    assert attrs["aegis.policy_version"] == "v1"
    assert list(attrs["aegis.rule_ids"]) == ["writes"]  # type: ignore[arg-type]
    # The caller's W3C traceparent is continued: same trace id, its span as parent.
    assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert rig.metric("aegis_decisions_total", outcome="allow", tool="db.write", door="test") == 1
    (line,) = rig.log_lines()
    assert line["event"] == "decision" and line["decision_id"] == d.decision_id
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_approval_needed_gets_a_ticket_id(rig: Rig) -> None:
    result = asyncio.run(rig.pipeline.decide(call("db.write", n=50), CTX))
    assert result.decision.outcome is Outcome.APPROVAL_NEEDED
    assert result.decision.approval_id == f"apr_{result.decision.decision_id}"
    attrs = dict(rig.spans.get_finished_spans()[0].attributes or {})
    assert attrs["aegis.approval_id"] == result.decision.approval_id


class Raising:
    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        raise RuntimeError("boom")


class Slow:
    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        await asyncio.sleep(1)
        return None


class StoreDown:
    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        raise StoreUnavailableError("redis: connection refused")


class Limited:
    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        return Refusal(ErrorCode.DECISION_LIMIT_EXCEEDED, "1 change per minute", retry_after=42.0)


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        (Raising(), ErrorCode.PIPELINE_INTERNAL_ERROR),
        (Slow(), ErrorCode.PIPELINE_TIMEOUT),
        (StoreDown(), ErrorCode.PIPELINE_STORE_UNAVAILABLE),
    ],
)
@pytest.mark.parametrize(
    ("tool", "outcome", "code"),
    [
        ("db.query", Outcome.ALLOW, ErrorCode.DECISION_FAIL_OPEN),  # declared read, read fails open
        ("db.write", Outcome.DENY, ErrorCode.DECISION_FAIL_CLOSED),  # a write never fails open
    ],
)
def test_fail_modes(
    rig: Rig, stage: object, error: ErrorCode, tool: str, outcome: Outcome, code: ErrorCode
) -> None:
    rig.pipeline.limits = stage  # type: ignore[assignment]
    result = asyncio.run(rig.pipeline.decide(call(tool, n=1), CTX))
    assert (result.decision.outcome, result.decision.code, result.error) == (outcome, code, error)
    assert rig.metric("aegis_pipeline_errors_total", door="test", error=str(error)) == 1
    opened = rig.metric("aegis_fail_open_total", door="test", error=str(error))
    assert opened == (1 if outcome is Outcome.ALLOW else 0)
    (line,) = rig.log_lines()
    assert line["event"] == "decision.could_not_decide" and line["error"] == str(error)
    assert line["fail_mode"] == ("open" if outcome is Outcome.ALLOW else "closed")


def test_a_claimed_read_on_an_undeclared_tool_fails_closed(rig: Rig) -> None:
    rig.pipeline.limits = Raising()  # type: ignore[assignment]
    claimed = parse_call({"tenant": "acme", "agent_id": "a1", "tool": "shell.exec", "kind": "read"})
    result = asyncio.run(rig.pipeline.decide(claimed, CTX))
    assert result.decision.code is ErrorCode.DECISION_FAIL_CLOSED


def test_refusal_short_circuits_policy(rig: Rig) -> None:
    rig.pipeline.limits = Limited()  # type: ignore[assignment]
    result = asyncio.run(rig.pipeline.decide(call("db.query"), CTX))
    d = result.decision
    assert (d.outcome, d.code, d.retry_after, d.rule_ids) == (
        Outcome.DENY,
        ErrorCode.DECISION_LIMIT_EXCEEDED,
        42.0,
        (),
    )
    assert result.error is None


def test_policy_swap_is_atomic_per_call(rig: Rig) -> None:
    v2 = compile_text(POLICY.replace('version: "v1"', 'version: "v2"'))
    first = asyncio.run(rig.pipeline.decide(call("db.query"), CTX))
    rig.pipeline.policy.swap(v2)
    second = asyncio.run(rig.pipeline.decide(call("db.query"), CTX))
    assert (first.decision.policy_version, second.decision.policy_version) == ("v1", "v2")


class SlowThenRefuse:
    """Waits on I/O twice, then refuses: the resumed coroutine must see every step."""

    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return Refusal(ErrorCode.DECISION_LIMIT_EXCEEDED, "after I/O", retry_after=1.0)


class RaiseAfterIO:
    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        await asyncio.sleep(0)
        raise StoreUnavailableError("lost the connection mid-call")


def test_stages_that_wait_on_io_are_resumed_to_completion(rig: Rig) -> None:
    rig.pipeline.limits = SlowThenRefuse()  # type: ignore[assignment]
    result = asyncio.run(rig.pipeline.decide(call("db.write", n=1), CTX))
    assert (result.decision.code, result.decision.reason, result.error) == (
        ErrorCode.DECISION_LIMIT_EXCEEDED,
        "after I/O",
        None,
    )
    rig.pipeline.limits = RaiseAfterIO()  # type: ignore[assignment]
    failed = asyncio.run(rig.pipeline.decide(call("db.write", n=1), CTX))
    assert failed.error is ErrorCode.PIPELINE_STORE_UNAVAILABLE


def test_external_cancellation_is_not_swallowed(rig: Rig) -> None:
    rig.pipeline.limits = SlowStageForever()  # type: ignore[assignment]
    rig.pipeline.timeout = None

    async def scenario() -> None:
        task = asyncio.create_task(rig.pipeline.decide(call("db.write", n=1), CTX))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


class SlowStageForever:
    async def check(self, call: ToolCall, policy: object = None) -> Refusal | None:
        await asyncio.sleep(60)
        return None


@dataclass
class RecordingAudit:
    fail: bool = False
    records: list[tuple[str, bool, object]] = field(default_factory=list)

    async def record(self, result, ctx, *, start_ns, end_ns, refs, durable):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)  # a real store waits on I/O
        if self.fail:
            from aegis.pipeline import AuditUnavailableError

            raise AuditUnavailableError("disk full")
        self.records.append((result.decision.decision_id, durable, refs))


def test_audit_sees_every_decision_and_writes_are_durable(rig: Rig) -> None:
    audit = RecordingAudit()
    rig.pipeline.audit = audit
    w = asyncio.run(rig.pipeline.decide(call("db.write", n=1), CTX))
    r = asyncio.run(rig.pipeline.decide(call("db.query"), CTX))
    assert [(i, d) for i, d, _ in audit.records] == [
        (w.decision.decision_id, True),
        (r.decision.decision_id, False),
    ]
    refs = audit.records[0][2]
    assert refs is not None and refs.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_unrecordable_write_fails_closed_but_reads_and_denials_stand(rig: Rig) -> None:
    rig.pipeline.audit = RecordingAudit(fail=True)
    write = asyncio.run(rig.pipeline.decide(call("db.write", n=1), CTX))
    assert (write.decision.outcome, write.decision.code, write.error) == (
        Outcome.DENY,
        ErrorCode.DECISION_FAIL_CLOSED,
        ErrorCode.AUDIT_UNAVAILABLE,
    )
    read = asyncio.run(rig.pipeline.decide(call("db.query"), CTX))
    assert read.decision.outcome is Outcome.ALLOW and read.error is None


class StalledAudit:
    async def record(self, *args: object, **kwargs: object) -> None:
        await asyncio.sleep(60)


class BrokenAudit:
    async def record(self, *args: object, **kwargs: object) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("bug in the audit stage")


@pytest.mark.parametrize("audit", [StalledAudit(), BrokenAudit()])
def test_a_stalled_or_broken_audit_fails_writes_closed_with_evidence(
    rig: Rig, audit: object
) -> None:
    rig.pipeline.audit = audit  # type: ignore[assignment]
    rig.pipeline.audit_timeout = 0.05
    result = asyncio.run(rig.pipeline.decide(call("db.write", n=1), CTX))
    assert (result.decision.code, result.error) == (
        ErrorCode.DECISION_FAIL_CLOSED,
        ErrorCode.AUDIT_UNAVAILABLE,
    )
    logged = [line["event"] for line in rig.log_lines()]
    assert logged == ["decision", "decision.could_not_decide"]  # the allow, then what was answered
