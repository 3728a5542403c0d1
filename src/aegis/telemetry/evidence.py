"""The evidence stage: span, metrics and log line for each decision."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aegis.pipeline.policy_store import PolicyStore
from aegis.pipeline.stages import PipelineResult, RequestContext, TraceRefs
from aegis.telemetry.log import JsonLog
from aegis.telemetry.metrics import UNDECLARED_TOOL, GatewayMetrics

SPAN_NAME = "aegis.decision"


class TelemetryEvidence:
    """Records each decision; never raises (a failure is counted in aegis_evidence_errors)."""

    def __init__(
        self,
        *,
        tracer: trace.Tracer | None = None,
        metrics: GatewayMetrics | None = None,
        log: JsonLog | None = None,
        policy: PolicyStore | None = None,
        log_decisions: bool = True,
    ) -> None:
        self.tracer = tracer if tracer is not None else trace.NoOpTracer()
        self._tracing = not isinstance(self.tracer, trace.NoOpTracer)
        self.metrics = metrics
        self.log = log
        self.policy = policy
        self.log_decisions = log_decisions
        self._propagator = TraceContextTextMapPropagator()

    def record(
        self, result: PipelineResult, ctx: RequestContext, start_ns: int, end_ns: int
    ) -> TraceRefs | None:
        trace_id = span_id = ""
        if self._tracing:
            try:
                trace_id, span_id = self._span(result, ctx, start_ns, end_ns)
            except Exception:  # evidence must not change the decision
                self._count_error("span")
        if self.metrics is not None:
            try:
                self._metrics(result, ctx, (end_ns - start_ns) / 1e9)
            except Exception:  # counted, never raised
                self._count_error("metrics")
        if self.log is not None:
            try:
                self._log(result, ctx, start_ns, end_ns, trace_id=trace_id, span_id=span_id)
            except Exception:  # counted, never raised
                self._count_error("log")
        return TraceRefs(trace_id, span_id) if trace_id else None

    def _count_error(self, sink: str) -> None:
        if self.metrics is not None:
            self.metrics.evidence_errors.labels(sink).inc()

    def _tool_label(self, result: PipelineResult) -> str:
        tool = result.call.tool
        policy = result.policy
        if policy is None and self.policy is not None:
            policy = self.policy.for_tenant(result.call.tenant)
        if policy is not None and policy.tool_info(tool) is not None:
            return tool
        return UNDECLARED_TOOL

    def _metrics(self, result: PipelineResult, ctx: RequestContext, seconds: float) -> None:
        assert self.metrics is not None
        d = result.decision
        tool = self._tool_label(result)
        self.metrics.observe_decision(str(d.outcome), tool, ctx.door, seconds)
        if result.error is not None:
            self.metrics.pipeline_errors.labels(ctx.door, str(result.error)).inc()
            if result.failed_open:
                self.metrics.fail_open.labels(ctx.door, str(result.error)).inc()
        if d.shadow is not None:
            self.metrics.shadow_disagreements.labels(
                tool, str(d.outcome), str(d.shadow.outcome)
            ).inc()
            if d.shadow.policy_version is not None:
                self.metrics.rollout_disagreements.labels(
                    d.policy_version, d.shadow.policy_version, str(d.outcome), str(d.shadow.outcome)
                ).inc()

    def _span(
        self, result: PipelineResult, ctx: RequestContext, start_ns: int, end_ns: int
    ) -> tuple[str, str]:
        call, d = result.call, result.decision
        parent = None
        if call.trace.traceparent:
            carrier = {"traceparent": call.trace.traceparent}
            if call.trace.tracestate:
                carrier["tracestate"] = call.trace.tracestate
            parent = self._propagator.extract(carrier)
        attributes: dict[str, str | int | float | bool | list[str]] = {
            "aegis.door": ctx.door,
            "aegis.tenant": call.tenant,
            "aegis.agent_id": call.agent_id,
            "aegis.tool": call.tool,
            "aegis.decision": str(d.outcome),
            "aegis.code": str(d.code),
            "aegis.reason": d.reason,
            "aegis.rule_ids": list(d.rule_ids),
            "aegis.policy_version": d.policy_version,
            "aegis.bundle_hash": d.bundle_hash,
            "aegis.decision_id": d.decision_id,
            "aegis.latency_us": (end_ns - start_ns) / 1000,
        }
        if d.approval_id:
            attributes["aegis.approval_id"] = d.approval_id
        if call.parent_agent_id:
            attributes["aegis.parent_agent_id"] = call.parent_agent_id
            attributes["aegis.parent_chain"] = list(call.parent_chain)
        if call.cost_estimate is not None:
            attributes["aegis.cost_estimate"] = call.cost_estimate
        if d.redactions:
            # Where and why, never what: the values stay out of telemetry.
            attributes["aegis.redacted_fields"] = sorted({r.path for r in d.redactions})
        if d.shadow is not None:
            attributes["aegis.shadow.decision"] = str(d.shadow.outcome)
            attributes["aegis.shadow.rule_ids"] = list(d.shadow.rule_ids)
            if d.shadow.policy_version is not None:  # another version in a rollout
                attributes["aegis.shadow.policy_version"] = d.shadow.policy_version
        if result.error is not None:
            attributes["aegis.error"] = str(result.error)
        span = self.tracer.start_span(
            SPAN_NAME,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=start_ns,
        )
        if result.error is not None:
            span.set_status(Status(StatusCode.ERROR, str(result.error)))
        span.end(end_time=end_ns)
        sc = span.get_span_context()
        return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"

    def _log(  # noqa: PLR0917 - two keyword-only ids after the four record() arguments
        self,
        result: PipelineResult,
        ctx: RequestContext,
        start_ns: int,
        end_ns: int,
        trace_id: str,
        span_id: str,
    ) -> None:
        assert self.log is not None
        d, call = result.decision, result.call
        if result.error is not None:
            self.log.warning(
                "decision.could_not_decide",
                error=str(result.error),
                detail=result.error_detail,
                fail_mode="open" if result.failed_open else "closed",
                decision_id=d.decision_id,
                door=ctx.door,
                tenant=call.tenant,
                agent_id=call.agent_id,
                tool=call.tool,
                trace_id=trace_id or None,
                span_id=span_id or None,
            )
            return
        if not self.log_decisions:
            return
        self.log.info(
            "decision",
            decision_id=d.decision_id,
            outcome=str(d.outcome),
            code=str(d.code),
            reason=d.reason,
            rule_ids=list(d.rule_ids),
            policy_version=d.policy_version,
            door=ctx.door,
            tenant=call.tenant,
            agent_id=call.agent_id,
            parent_agent_id=call.parent_agent_id,
            tool=call.tool,
            approval_id=d.approval_id,
            redactions=[r.to_dict() for r in d.redactions],
            shadow=str(d.shadow.outcome) if d.shadow else None,
            shadow_policy_version=d.shadow.policy_version if d.shadow else None,
            latency_us=round((end_ns - start_ns) / 1000, 1),
            trace_id=trace_id or None,
            span_id=span_id or None,
        )
