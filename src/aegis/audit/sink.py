"""The pipeline's audit stage: one decision record per call, plus lifecycle events.

The record holds the params *after* the policy's sanitize obligations
(:func:`aegis.policy.engine.params_for_record`), whatever the outcome: a
secret in a denied call's params never reaches the log. Write tools' records
are durable before the answer leaves (the pipeline passes ``durable``);
reads are queued (DESIGN.md §6).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aegis.audit.log import AuditLog
from aegis.audit.record import CanonicalBody, RecordKind, canonical
from aegis.pipeline.policy_store import PolicyStore
from aegis.pipeline.stages import PipelineResult, RequestContext, TraceRefs
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.engine import params_for_record


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditSink:
    """:class:`aegis.pipeline.stages.AuditStage` over an :class:`AuditLog`."""

    def __init__(
        self,
        log: AuditLog,
        policy_store: PolicyStore,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.log = log
        self.policy_store = policy_store
        self.clock = clock

    async def record(
        self,
        result: PipelineResult,
        ctx: RequestContext,
        *,
        start_ns: int,
        end_ns: int,
        refs: TraceRefs | None,
        durable: bool,
    ) -> None:
        body = self.decision_body(result, ctx, start_ns=start_ns, end_ns=end_ns, refs=refs)
        if durable:
            await self.log.append(RecordKind.DECISION, result.call.tenant, body, durable=True)
        else:
            self.log.append_nowait(RecordKind.DECISION, result.call.tenant, body)

    def decision_body(
        self,
        result: PipelineResult,
        ctx: RequestContext,
        *,
        start_ns: int,
        end_ns: int,
        refs: TraceRefs | None,
    ) -> dict[str, Any]:
        d, call = result.decision, result.call
        # Sanitize obligations come from the policy version that decided; a result
        # built outside the pipeline (none named) takes the tenant's active one.
        policy = result.policy or self.policy_store.for_tenant(call.tenant)
        if d.sanitized_params is not None:
            # The engine already applied this call's sanitize rules (sanitize, or
            # approval_needed with sanitizers): record what it produced.
            params, redactions = d.sanitized_params, d.redactions
        else:  # deny, allow, refusals: apply the obligations for the record only
            params, redactions = params_for_record(policy, call, self.clock())
        rest: dict[str, Any] = {
            "decision_id": d.decision_id,
            "outcome": str(d.outcome),
            "code": str(d.code),
            "reason": d.reason,
            "rule_ids": list(d.rule_ids),
            "policy_version": d.policy_version,
            "bundle_hash": d.bundle_hash,
            "approval_id": d.approval_id,
            "tenant": call.tenant,
            "agent_id": call.agent_id,
            "parent_chain": list(call.parent_chain),
            "session_id": call.session_id or None,
            "tool": call.tool,
            "kind": str(policy.kind_of(call)),
            "door": ctx.door,
            "redactions": [r.to_dict() for r in redactions],
            # What shadow rules or the other version in a rollout would have decided
            # (only where it differs): the record a policy owner reviews before promoting.
            "shadow": d.shadow.to_dict() if d.shadow is not None else None,
            "destination": call.destination,
            # A decimal string: RFC 8785 writes floats in ECMAScript form, and a
            # string keeps this body free of them (see below) and exact.
            "cost_estimate": None if call.cost_estimate is None else repr(call.cost_estimate),
            "error": str(result.error) if result.error is not None else None,
            "error_detail": result.error_detail,
            "trace_id": refs.trace_id if refs is not None else None,
            "span_id": refs.span_id if refs is not None else None,
            "latency_us": (end_ns - start_ns) // 1000,
        }
        return _encode_decision_body(rest, params)

    async def record_event(
        self,
        kind: RecordKind,
        tenant: str | None,
        body: dict[str, Any],
        *,
        durable: bool = True,
    ) -> int | None:
        """Approvals, revocations, policy activations, incidents."""
        return await self.log.append(kind, tenant, body, durable=durable)

    async def record_policy_activation(
        self,
        policy: CompiledPolicy,
        *,
        source_files: Sequence[str] | None = None,
        tenant: str | None = None,
        bundle: Mapping[str, Any] | None = None,
    ) -> int | None:
        """The bundle manifest of the policy now deciding (``tenant`` None: the shared
        policy). ``bundle`` adds what the bundle says of itself -- revision, manifest
        metadata -- and how it became active (start, reload, promote, rollback; who)."""
        body: dict[str, Any] = {
            "version": policy.version,
            "bundle_hash": policy.bundle_hash,
            "rules": len(policy.rules),
            "sources": list(source_files if source_files is not None else policy.sources),
        }
        if bundle is not None:
            body["bundle"] = dict(bundle)
        return await self.record_event(RecordKind.POLICY_ACTIVATION, tenant, body)


def _encode_decision_body(rest: dict[str, Any], params: Any) -> dict[str, Any]:
    """The decision body with its RFC 8785 bytes, encoded once.

    Everything but ``params`` is strings, small integers, null and lists of
    strings under fixed ASCII keys: the C encoder's output is already RFC 8785
    for them (RFC 8785 §3.2). Only ``params`` -- the caller's data -- needs the
    general canonicaliser; its bytes go in at their sorted place, just before
    ``"parent_chain"``. Anything unexpected falls back to the general path.
    """
    full = {**rest, "params": params}
    try:
        text = json.dumps(rest, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        head, sep, tail = text.partition(',"parent_chain":')
        if not sep:
            return full
        encoded = head.encode() + b',"params":' + canonical(params) + sep.encode() + tail.encode()
    except (TypeError, ValueError):  # incl. UnicodeEncodeError: a lone surrogate somewhere
        return full
    return CanonicalBody(full, encoded)
